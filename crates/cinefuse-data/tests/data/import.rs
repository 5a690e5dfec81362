//! (imported into the `data` test binary)
//! Importer tests on small fixtures written here, in each source layout, including malformed entries.

use std::fs;
use std::io::Write;
use std::path::Path;

use cinefuse_data::import::imdb_tsv::{TsvSources, import_imdb_tsv};
use cinefuse_data::import::mmimdb::import_mmimdb;
use cinefuse_data::import::run_import;
use cinefuse_data::import::table::{ExtraColumns, import_table, parse_mapping};
use cinefuse_data::movie::read_movies;

fn png(path: &Path) {
    image::RgbImage::from_pixel(8, 12, image::Rgb([10, 200, 30]))
        .save_with_format(path, image::ImageFormat::Png)
        .unwrap();
}

#[test]
fn mmimdb_import_keeps_the_split_and_handles_odd_entries() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("mmimdb");
    let ds = src.join("dataset");
    fs::create_dir_all(&ds).unwrap();
    fs::write(
        ds.join("0000001.json"),
        r#"{"title": "Harbor Lights", "year": 1999, "runtimes": ["USA:95"], "genres": ["Drama", "Romance"],
            "rating": 7.1, "votes": 1234, "certificates": ["Germany:12", "USA:PG-13"],
            "director": [{"name": "Ada Berg"}], "cast": ["Mira Okafor", {"name": "Jonas Duval"}],
            "countries": ["USA"], "languages": ["English", "French"],
            "plot": ["A lighthouse keeper\nmeets a sailor.::jdoe@example.org", "Second, longer plot."]}"#,
    )
    .unwrap();
    png(&ds.join("0000001.jpeg"));
    // Latin-1 bytes (é = 0xE9) and no poster.
    let mut latin = b"{\"title\": \"Caf\xE9 Noir\", \"genres\": [\"Comedy\"], \"plot outline\": \"Coffee.\", \"rating\": \"6.5\"}".to_vec();
    latin.push(b'\n');
    fs::write(ds.join("0000002.json"), latin).unwrap();
    fs::write(
        ds.join("0000003.json"),
        "{\"title\": \"Broken\", \"year\": ",
    )
    .unwrap();
    fs::write(
        src.join("split.json"),
        r#"{"train": ["0000001"], "dev": ["0000002"], "test": ["0000003"]}"#,
    )
    .unwrap();

    let out = dir.path().join("out");
    let err = run_import(&out, &[&src], |s| import_mmimdb(&src, s, false))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("0000003.json") && err.contains("malformed JSON"),
        "{err}"
    );
    assert!(!out.exists(), "nothing written on failure");

    let report = run_import(&out, &[&src], |s| import_mmimdb(&src, s, true)).unwrap();
    assert_eq!(
        (
            report.imported,
            report.skipped.len(),
            report.posters_copied,
            report.posters_missing
        ),
        (2, 1, 1, 1)
    );
    let movies = read_movies(&out).unwrap();
    let a = &movies[0];
    assert_eq!(
        a.plot.as_deref(),
        Some("A lighthouse keeper meets a sailor.")
    );
    assert_eq!(a.runtime_min, Some(95.0));
    assert_eq!(a.certificate.as_deref(), Some("PG-13"));
    assert_eq!(a.directors, Some(vec!["Ada Berg".to_string()]));
    assert_eq!(
        a.cast,
        Some(vec!["Mira Okafor".to_string(), "Jonas Duval".to_string()])
    );
    assert!(out.join(a.poster.as_ref().unwrap()).exists());
    let b = &movies[1];
    assert_eq!(b.title.as_deref(), Some("Café Noir"));
    assert_eq!(b.rating, Some(6.5));
    assert_eq!(b.plot.as_deref(), Some("Coffee."));
    let split: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("split.json")).unwrap()).unwrap();
    assert_eq!(split["dev"][0], "0000002");
    assert_eq!(
        split["test"].as_array().unwrap().len(),
        0,
        "skipped ids are dropped from the split"
    );
    #[cfg(unix)]
    links_out_of_the_folder_are_not_followed(dir.path(), &src);
}

/// A movie file or poster that is a link out of the MM-IMDb folder is never read: refused, or
/// with `--skip-bad` its movie skipped and its poster dropped (the movie kept), both listed.
#[cfg(unix)]
fn links_out_of_the_folder_are_not_followed(dir: &std::path::Path, src: &std::path::Path) {
    let ds = src.join("dataset");
    fs::remove_file(ds.join("0000003.json")).unwrap();
    let outside = dir.join("outside.json");
    fs::write(&outside, r#"{"title": "Elsewhere", "genres": ["Drama"]}"#).unwrap();
    std::os::unix::fs::symlink(&outside, ds.join("0000004.json")).unwrap();
    fs::remove_file(ds.join("0000001.jpeg")).unwrap();
    png(&dir.join("outside.jpeg"));
    std::os::unix::fs::symlink(dir.join("outside.jpeg"), ds.join("0000001.jpeg")).unwrap();
    let out = dir.join("linked");
    let err = run_import(&out, &[src], |s| import_mmimdb(src, s, false))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("0000001.jpeg") && err.contains("symbolic link"),
        "{err}"
    );
    let report = run_import(&out, &[src], |s| import_mmimdb(src, s, true)).unwrap();
    assert_eq!((report.imported, report.skipped.len()), (2, 1));
    assert!(
        report.skipped[0].reason.contains("symbolic link"),
        "{:?}",
        report.skipped
    );
    let dropped = &report.posters_dropped;
    assert_eq!(dropped.len(), 1);
    assert!(
        dropped[0].reason.contains("kept without a poster"),
        "{dropped:?}"
    );
    let movies = read_movies(&out).unwrap();
    assert!(
        movies
            .iter()
            .all(|m| m.poster.is_none() && m.title.as_deref() != Some("Elsewhere"))
    );
    let listed = fs::read_to_string(out.join("import_skipped.json")).unwrap();
    assert!(
        listed.contains("0000004") && listed.contains("0000001"),
        "{listed}"
    );
}

#[test]
fn table_import_maps_columns_splits_lists_and_copies_posters() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("img")).unwrap();
    png(&dir.path().join("img/a.png"));
    let csv = "imdb_id,title,year,imdb_rating,imdb_votes,genres,director,actors,rated,poster_file,plot\n\
               tt01,Alpha,2001,7.5,\"12,345\",\"Drama, Comedy\",Ada Berg,\"A One, B Two\",PG,img/a.png,A plot.\n\
               tt02,Beta,N/A,N/A,N/A,Horror,N/A,,N/A,img/missing.png,\n";
    fs::write(dir.path().join("movies.csv"), csv).unwrap();
    let map = parse_mapping(&[
        "id=imdb_id".into(),
        "rating=imdb_rating".into(),
        "votes=imdb_votes".into(),
        "directors=director".into(),
        "cast=actors".into(),
        "certificate=rated".into(),
        "poster=poster_file".into(),
    ])
    .unwrap();
    let out = dir.path().join("out");
    let report = run_import(&out, &[&dir.path().join("movies.csv")], |s| {
        import_table(
            &dir.path().join("movies.csv"),
            s,
            &map,
            &ExtraColumns::None,
            false,
        )
    })
    .unwrap();
    assert_eq!(
        (
            report.imported,
            report.posters_copied,
            report.posters_missing
        ),
        (2, 1, 1)
    );
    let m = read_movies(&out).unwrap();
    assert_eq!(m[0].votes, Some(12_345));
    assert_eq!(
        m[0].genres,
        Some(vec!["Drama".to_string(), "Comedy".to_string()])
    );
    assert_eq!(
        m[0].cast,
        Some(vec!["A One".to_string(), "B Two".to_string()])
    );
    assert_eq!(m[0].poster.as_deref(), Some("posters/tt01.png"));
    assert_eq!(
        (
            m[1].year,
            m[1].rating,
            m[1].certificate.as_deref(),
            m[1].plot.as_deref()
        ),
        (None, None, None, None)
    );

    assert!(
        parse_mapping(&["ratingx=a".into()])
            .unwrap_err()
            .to_string()
            .contains("unknown target field")
    );
    let map = parse_mapping(&["id=imdb_id".into(), "rating=imdb_rating".into()]).unwrap();
    fs::write(dir.path().join("bad.jsonl"), "{\"imdb_id\": \"x\", \"imdb_rating\": 7}\n{\"imdb_id\": \"y\", \"imdb_rating\": \"great\"}\n").unwrap();
    let err = run_import(
        &dir.path().join("out2"),
        &[&dir.path().join("bad.jsonl")],
        |s| {
            import_table(
                &dir.path().join("bad.jsonl"),
                s,
                &map,
                &ExtraColumns::None,
                false,
            )
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("bad.jsonl:2")
            && err.contains("field `rating`")
            && err.contains("imdb_rating"),
        "{err}"
    );
    let report = run_import(
        &dir.path().join("out2"),
        &[&dir.path().join("bad.jsonl")],
        |s| {
            import_table(
                &dir.path().join("bad.jsonl"),
                s,
                &map,
                &ExtraColumns::None,
                true,
            )
        },
    )
    .unwrap();
    assert_eq!((report.imported, report.skipped.len()), (1, 1));
    assert!(dir.path().join("out2/import_skipped.json").exists());

    // Nothing to import is refused, naming the source and the first bad row, and leaves no
    // output folder: a header alone, an empty file, every row bad.
    let table = |name: &str, text: &str, skip_bad: bool| {
        let src = dir.path().join(name);
        fs::write(&src, text).unwrap();
        let out = dir.path().join(format!("{name}.out"));
        let import =
            |s: &std::path::Path| import_table(&src, s, &map, &ExtraColumns::None, skip_bad);
        let err = run_import(&out, &[&src], import).unwrap_err().to_string();
        assert!(!out.exists(), "{name}: {err}");
        err
    };
    let err = table("header.csv", "imdb_id,imdb_rating\n", false);
    assert!(
        err.contains("header.csv") && err.contains("no movie rows"),
        "{err}"
    );
    assert!(table("empty.jsonl", "", false).contains("no movie rows"));
    let err = table(
        "all-bad.jsonl",
        "{\"imdb_id\": \"y\", \"imdb_rating\": \"great\"}\n",
        true,
    );
    assert!(
        err.contains("all 1 rows are bad") && err.contains("line 1"),
        "{err}"
    );
    // A poster path out of the folder fails the import, or with --skip-bad is dropped and
    // listed while its movie is kept.
    let src = dir.path().join("posters.jsonl");
    fs::write(
        &src,
        "{\"imdb_id\": \"p\", \"imdb_rating\": 7, \"poster\": \"../secret.png\"}\n",
    )
    .unwrap();
    let import = |s: &std::path::Path, skip| import_table(&src, s, &map, &ExtraColumns::None, skip);
    let err = run_import(&dir.path().join("p1"), &[&src], |s| import(s, false));
    let err = err.unwrap_err().to_string();
    assert!(
        err.contains("posters.jsonl") && err.contains("field `poster`"),
        "{err}"
    );
    let report = run_import(&dir.path().join("p2"), &[&src], |s| import(s, true)).unwrap();
    assert_eq!((report.imported, report.posters_dropped.len()), (1, 1));
    assert_eq!(report.posters_dropped[0].line, 1);
    // A quoted value never closed would swallow the rest of the file into one value.
    let err = table(
        "open.csv",
        "imdb_id,plot\nx,\"fine\"\ny,\"open\nz,more\n",
        false,
    );
    assert!(
        err.contains("line 3") && err.contains("never closed"),
        "{err}"
    );
}

#[test]
fn imdb_tsv_import_joins_tables_including_gzip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(
        d.join("title.basics.tsv"),
        "tconst\ttitleType\tprimaryTitle\toriginalTitle\tisAdult\tstartYear\tendYear\truntimeMinutes\tgenres\n\
         tt0000001\tmovie\tFirst\tFirst\t0\t1994\t\\N\t142\tCrime,Drama\n\
         tt0000002\tshort\tShort One\tShort One\t0\t1894\t\\N\t1\tShort\n\
         tt0000003\tmovie\tNo Rating\tNo Rating\t0\t\\N\t\\N\t\\N\t\\N\n",
    )
    .unwrap();
    let mut gz = flate2::write::GzEncoder::new(
        fs::File::create(d.join("title.ratings.tsv.gz")).unwrap(),
        flate2::Compression::default(),
    );
    gz.write_all(
        b"tconst\taverageRating\tnumVotes\ntt0000001\t9.3\t2900000\ntt0000002\t5.1\t100\n",
    )
    .unwrap();
    gz.finish().unwrap();
    fs::write(
        d.join("title.crew.tsv"),
        "tconst\tdirectors\twriters\ntt0000001\tnm0001104\t\\N\n",
    )
    .unwrap();
    fs::write(
        d.join("name.basics.tsv"),
        "nconst\tprimaryName\tbirthYear\nnm0001104\tFrank Darabont\t1959\n",
    )
    .unwrap();
    let basics = d.join("title.basics.tsv");
    let ratings = d.join("title.ratings.tsv.gz");
    let crew = d.join("title.crew.tsv");
    let names = d.join("name.basics.tsv");
    let src = TsvSources {
        basics: &basics,
        ratings: &ratings,
        crew: Some(&crew),
        names: Some(&names),
        types: vec!["movie".into()],
    };
    let (movies, report) = import_imdb_tsv(&src, false).unwrap();
    assert_eq!(report.imported, 2);
    assert_eq!(movies[0].rating, Some(9.3));
    assert_eq!(movies[0].votes, Some(2_900_000));
    assert_eq!(movies[0].runtime_min, Some(142.0));
    assert_eq!(
        movies[0].directors,
        Some(vec!["Frank Darabont".to_string()])
    );
    assert_eq!(
        movies[0].genres,
        Some(vec!["Crime".to_string(), "Drama".to_string()])
    );
    assert_eq!(
        (movies[1].year, movies[1].rating, movies[1].genres.as_ref()),
        (None, None, None)
    );

    fs::write(
        d.join("bad.tsv"),
        "tconst\ttitleType\tprimaryTitle\tstartYear\truntimeMinutes\tgenres\ntt1\tmovie\tX\t1990\n",
    )
    .unwrap();
    let bad = d.join("bad.tsv");
    let src = TsvSources {
        basics: &bad,
        ratings: &ratings,
        crew: None,
        names: None,
        types: vec![],
    };
    let err = import_imdb_tsv(&src, false).err().unwrap().to_string();
    assert!(
        err.contains("bad.tsv:2") && err.contains("columns"),
        "{err}"
    );

    // Values past what a movie stores are refused as written (they were saturated to year
    // 2147483647 or written as a missing rating), as the other importers refuse them.
    let header = "tconst\ttitleType\tprimaryTitle\tstartYear\truntimeMinutes\tgenres\n";
    for (row, says) in [
        (
            "tt1\tmovie\tX\t99999999999\t90\tDrama",
            "bad.tsv:2: column `startYear`: expected a year, got 99999999999",
        ),
        (
            "tt1\tmovie\tX\t1990\t1e39\tDrama",
            "column `runtimeMinutes`: out of range, got 1e39",
        ),
        (
            "tt1\tmovie\tX\t1990\t-5\tDrama",
            "field `runtime_min`: must be within (0, 2000)",
        ),
        (
            "tt1\tmovie\tX\t1066\t90\tDrama",
            "field `year`: must be within 1870–2100",
        ),
    ] {
        fs::write(&bad, format!("{header}{row}\n")).unwrap();
        let err = import_imdb_tsv(&src, false).err().unwrap().to_string();
        assert!(err.contains(says), "{row}: {err}");
    }
    fs::write(
        d.join("bad_ratings.tsv"),
        "tconst\taverageRating\tnumVotes\ntt1\t1e39\t5\n",
    )
    .unwrap();
    let bad_ratings = d.join("bad_ratings.tsv");
    let src = TsvSources {
        ratings: &bad_ratings,
        ..src
    };
    let err = import_imdb_tsv(&src, false).err().unwrap().to_string();
    assert!(
        err.contains("bad_ratings.tsv:2: averageRating is not a number within 0–10"),
        "{err}"
    );
}

/// Optional: the real IMDb TSV excerpts in ../shared/data (skips when absent).
#[test]
fn real_imdb_tsv_samples_import() {
    let dir = crate::manifest_dir().join("../../../shared/data/imdb-tsv-samples/kashery");
    if !dir.exists() {
        announce_skip(&format!("{} is absent", dir.display()));
        return;
    }
    let (b, r) = (dir.join("title.basics.tsv"), dir.join("title.ratings.tsv"));
    let src = TsvSources {
        basics: &b,
        ratings: &r,
        crew: None,
        names: None,
        types: vec![],
    };
    let (movies, report) = import_imdb_tsv(&src, true).unwrap();
    eprintln!("{report}");
    assert!(movies.len() > 200);
    assert!(movies.iter().filter(|m| m.rating.is_some()).count() > 100);
}

#[test]
fn table_import_refuses_missing_columns_loose_numbers_and_posters_outside() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let import = |rows: &str, map: &[&str], out: &str| {
        let src = d.join(format!("{out}.jsonl"));
        fs::write(&src, rows).unwrap();
        let map = parse_mapping(&map.iter().map(|m| m.to_string()).collect::<Vec<_>>()).unwrap();
        run_import(&d.join(out), &[&src], |s| {
            import_table(&src, s, &map, &ExtraColumns::None, false)
        })
        .map_err(|e| e.to_string())
    };

    let err = import(
        "{\"id\":\"a\",\"rating\":\"7.5\"}\n",
        &["rating=no_such_column"],
        "o1",
    )
    .unwrap_err();
    assert!(
        err.contains("no column `no_such_column`") && err.contains("id, rating"),
        "{err}"
    );
    assert!(!d.join("o1").exists(), "nothing written");

    // A CSV header naming a column twice: the second would replace the first's values.
    let src = d.join("twice.csv");
    fs::write(&src, "id,title,title,genres\ntt1,a,b,Drama\n").unwrap();
    let err = run_import(&d.join("o2"), &[&src], |s| {
        let map = parse_mapping(&[]).unwrap();
        import_table(&src, s, &map, &ExtraColumns::None, false)
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("twice.csv") && err.contains("`title` twice (columns 2 and 3)"),
        "{err}"
    );
    assert!(!d.join("o2").exists(), "nothing written");

    for (i, (field, value)) in [
        ("rating", "7.5/10"),
        ("rating", "8.1 (12 votes)"),
        ("budget", "$1.5M"),
        ("votes", "12.5"),
        ("runtime_min", "about 2 hours"),
    ]
    .into_iter()
    .enumerate()
    {
        let row = format!("{{\"id\":\"a\",\"{field}\":\"{value}\"}}\n");
        let err = import(&row, &[], &format!("bad{i}")).unwrap_err();
        assert!(
            err.contains(":1:") && err.contains(&format!("field `{field}`")) && err.contains(value),
            "{value}: {err}"
        );
    }
    let row = "{\"id\":\"a\",\"runtime_min\":\"2h 5min\",\"votes\":\"1e3\",\"gross\":\"$1,500\",\"genres\":\"Drama|Comedy\"}\n";
    import(row, &[], "good").unwrap();
    let m = read_movies(&d.join("good")).unwrap();
    assert_eq!(
        (m[0].runtime_min, m[0].votes, m[0].gross),
        (Some(125.0), Some(1000), Some(1500.0))
    );
    assert_eq!(
        m[0].genres.as_deref(),
        Some(&["Drama".to_string(), "Comedy".to_string()][..])
    );

    fs::write(d.join("outside.png"), b"not read").unwrap();
    fs::create_dir(d.join("inner")).unwrap();
    for (i, poster) in ["/etc/passwd", "../outside.png"].into_iter().enumerate() {
        let src = d.join("inner/t.jsonl");
        fs::write(&src, format!("{{\"id\":\"a\",\"poster\":\"{poster}\"}}\n")).unwrap();
        let out = d.join(format!("p{i}"));
        let err = run_import(&out, &[&src], |s| {
            import_table(
                &src,
                s,
                &parse_mapping(&[]).unwrap(),
                &ExtraColumns::None,
                false,
            )
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("field `poster`") && err.contains("leaves the dataset folder"),
            "{err}"
        );
        assert!(!out.exists(), "nothing copied");
    }
}

/// Says why a test was skipped where `cargo test` shows it even for a passing test (libtest
/// captures the print macros, not direct writes to stderr).
fn announce_skip(why: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}
