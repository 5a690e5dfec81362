//! (imported into the `train` test binary)
//! An export written by cinefuse on 2026-12-01, committed as a fixture: a tiny fused model
//! (poster CNN, plot transformer, metadata, attention fusion) trained on generated demo data,
//! with three movies and what `cinefuse predict --json` said of them that day. Every later
//! `Predictor` must load it and predict the same: a change to the module tree, the weight
//! names or the export format that would strand users' exported models fails here.

use std::collections::BTreeMap;

use cinefuse_train::config::BackendKind;
use cinefuse_train::predictor::{MoviePrediction, Predictor, movies_from_jsonl};

const TOLERANCE: f32 = 1e-5;

fn probabilities(p: &MoviePrediction) -> BTreeMap<&str, (f32, bool)> {
    p.genres
        .iter()
        .map(|g| (g.genre.as_str(), (g.probability, g.predicted)))
        .collect()
}

#[test]
fn an_export_from_2026_12_01_loads_and_predicts_as_it_did() {
    let dir = crate::manifest_dir().join("tests/fixtures/export-2026-12-01");
    let predictor = Predictor::load(&dir, Some(BackendKind::Flex)).unwrap();
    let movies = movies_from_jsonl(&dir.join("movies.jsonl")).unwrap();
    let inputs: Vec<_> = movies
        .iter()
        .map(|m| predictor.item(m, None, &dir).unwrap())
        .collect();
    let got = predictor.predict(&inputs);
    let expected: Vec<MoviePrediction> = std::fs::read_to_string(dir.join("expected.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(got.len(), expected.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g.id, e.id);
        let (pg, pe) = (probabilities(g), probabilities(e));
        assert_eq!(pg.keys().collect::<Vec<_>>(), pe.keys().collect::<Vec<_>>());
        for (genre, (p, predicted)) in &pe {
            let (q, q_predicted) = pg[genre];
            assert!((p - q).abs() <= TOLERANCE, "{}: {genre} {q} vs {p}", e.id);
            assert_eq!(q_predicted, *predicted, "{}: {genre}", e.id);
        }
        assert!((g.rating - e.rating).abs() <= TOLERANCE, "{}", e.id);
        let (gi, ei) = (g.rating_interval.unwrap(), e.rating_interval.unwrap());
        assert!((gi[0] - ei[0]).abs() <= TOLERANCE && (gi[1] - ei[1]).abs() <= TOLERANCE);
        assert_eq!(g.contribution_method, e.contribution_method);
    }
}
