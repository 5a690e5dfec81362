//! Loading an exported cinefuse model from Rust and predicting one movie.
//!
//! ```sh
//! cargo run -p cinefuse-cli -- quickstart                     # trains and exports models/<run>
//! cargo run -p cinefuse-train --example predict_from_export -- models/<run> [poster.png]
//! ```

use std::path::Path;

use cinefuse_data::Movie;
use cinefuse_train::predictor::Predictor;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let model_dir = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: predict_from_export MODEL_DIR [POSTER]"))?;
    let poster = args.next();

    // The export holds weights, config, preprocessing, tokenizer and calibration: nothing else
    // is needed. `None` keeps the backend of the model's config (auto: GPU if present, else CPU).
    let predictor = Predictor::load(Path::new(&model_dir), None)?;

    let movie = Movie {
        title: Some("The Last Harbor".into()),
        year: Some(2004),
        runtime_min: Some(112.0),
        plot: Some("A widow returns to her family's estranged fishing town, where grief and old memories wait.".into()),
        directors: Some(vec!["Ada Berg".into()]),
        ..Movie::new("example")
    };
    let item = predictor.item(&movie, poster.as_deref().map(Path::new), Path::new("."))?;
    for p in predictor.predict(&[item]) {
        match p.rating_interval {
            Some([lo, hi]) => println!("rating {:.2} in [{lo:.2}, {hi:.2}]", p.rating),
            None => println!("rating {:.2} (no interval)", p.rating),
        }
        for g in p.genres.iter().filter(|g| g.predicted) {
            println!("genre {} ({:.2})", g.genre, g.probability);
        }
        for c in &p.contributions {
            println!(
                "{} contributed {:.0} % ({})",
                c.modality.name(),
                c.share * 100.0,
                p.contribution_method
            );
        }
    }
    Ok(())
}
