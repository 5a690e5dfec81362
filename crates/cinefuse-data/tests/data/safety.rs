//! (imported into the `data` test binary)
//! Users' files are sacred: a dataset's posters stay inside its folder, outputs never
//! replace inputs or folders cinefuse did not make, and odd bytes are named, not fatal.

use std::fs;
use std::path::Path;

use cinefuse_data::prepare::PrepareConfig;
use cinefuse_data::{prepare_dataset, synth};

use super::{dir_digest, small_config, tiny_png, write_lines};

fn skipping() -> PrepareConfig {
    PrepareConfig {
        skip_bad: true,
        val_ratio: 0.0,
        test_ratio: 0.0,
        ..small_config()
    }
}

fn bad_records(prepared: &Path) -> Vec<serde_json::Value> {
    serde_json::from_slice(&fs::read(prepared.join("bad_records.json")).unwrap()).unwrap()
}

#[test]
fn posters_outside_the_dataset_are_never_read() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    tiny_png(&root.path().join("outside.png"), [9, 9, 9]);
    tiny_png(&data.join("posters/ok.png"), [200, 10, 10]);
    let mut lines = vec![
        r#"{"id":"ok","rating":7.0,"genres":["Drama"],"poster":"posters/ok.png"}"#.to_string(),
        r#"{"id":"abs","rating":7.0,"genres":["Drama"],"poster":"/etc/passwd"}"#.into(),
        r#"{"id":"up","rating":7.0,"genres":["Drama"],"poster":"../outside.png"}"#.into(),
    ];
    #[cfg(unix)]
    {
        let link = |name: &str, target: &Path| {
            std::os::unix::fs::symlink(target, data.join("posters").join(name)).unwrap()
        };
        link("exists.png", &root.path().join("outside.png"));
        link("gone.png", &root.path().join("no-such.png"));
        for id in ["exists", "gone"] {
            lines.push(format!(
                r#"{{"id":"{id}","rating":7.0,"genres":["Drama"],"poster":"posters/{id}.png"}}"#
            ));
        }
    }
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    write_lines(&data, &refs);

    let err = prepare_dataset(&data, &root.path().join("p1"), &small_config())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(":2:") && err.contains("poster") && err.contains("leaves the dataset folder"),
        "{err}"
    );

    let out = root.path().join("p2");
    let summary = prepare_dataset(&data, &out, &skipping()).unwrap();
    assert_eq!(summary.posters_cached, 1, "only the poster inside is read");
    let bad = bad_records(&out);
    assert_eq!(bad.len(), lines.len() - 1);
    assert!(bad.iter().all(|b| b["field"] == "poster"), "{bad:?}");
    let reasons: Vec<String> = bad
        .iter()
        .map(|b| b["reason"].as_str().unwrap().to_string())
        .collect();
    assert!(
        reasons
            .iter()
            .all(|r| r.contains("leaves the dataset folder")),
        "{reasons:?}"
    );
    #[cfg(unix)]
    assert_eq!(
        reasons[2].replace("exists", "X"),
        reasons[3].replace("gone", "X"),
        "an escaping link says nothing about whether its target exists"
    );
}

#[test]
fn outputs_never_replace_inputs_or_foreign_folders() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    synth::write_synthetic(&data, 30, 5).unwrap();
    let before = dir_digest(&data);
    let config = PrepareConfig {
        min_genre_count: 1,
        ..small_config()
    };

    for (out, says) in [
        (data.clone(), "is the input"),
        (root.path().to_path_buf(), "contains the input"),
    ] {
        let err = prepare_dataset(&data, &out, &config)
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{err}");
    }
    let foreign = root.path().join("mine");
    fs::create_dir(&foreign).unwrap();
    fs::write(foreign.join("notes.txt"), b"keep me").unwrap();
    let err = prepare_dataset(&data, &foreign, &config)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not written by cinefuse"), "{err}");
    let err = synth::write_synthetic(&foreign, 10, 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not written by cinefuse"), "{err}");
    assert_eq!(fs::read(foreign.join("notes.txt")).unwrap(), b"keep me");
    assert_eq!(dir_digest(&data), before, "the dataset is untouched");

    // Our own output of the same kind is replaced whole; of another kind, refused.
    let prepared = root.path().join("prepared");
    prepare_dataset(&data, &prepared, &config).unwrap();
    fs::write(prepared.join("stale.bin"), b"old").unwrap();
    prepare_dataset(&data, &prepared, &config).unwrap();
    assert!(!prepared.join("stale.bin").exists(), "replaced, not merged");
    let err = synth::write_synthetic(&prepared, 10, 1)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("holds prepared data written by cinefuse, not a dataset"),
        "{err}"
    );
    synth::write_synthetic(&data, 30, 5).unwrap();
    assert_eq!(
        dir_digest(&data),
        before,
        "a dataset synth made may be regenerated"
    );
    let leftovers: Vec<String> = fs::read_dir(root.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no staging folders left: {leftovers:?}"
    );
}

#[test]
fn odd_bytes_in_movies_jsonl_are_named_and_skippable() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = r#"{"id":"a","rating":7.0,"genres":["Drama"],"plot":"a story"}"#;
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(good.as_bytes());
    bytes.extend_from_slice(b"\n{\"id\":\"b\",\"title\":\"caf\xE9\"}\n");
    bytes.extend_from_slice(r#"{"id":"c","rating":6.0,"genres":["Drama"]}"#.as_bytes());
    fs::write(d.join("movies.jsonl"), &bytes).unwrap();

    let err = prepare_dataset(d, &d.join("p1"), &small_config())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("movies.jsonl:2") && err.contains("invalid UTF-8"),
        "{err}"
    );
    let summary = prepare_dataset(d, &d.join("p2"), &skipping()).unwrap();
    assert_eq!(
        (summary.records_kept, summary.records_skipped),
        (2, 1),
        "the BOM line is kept"
    );

    fs::write(d.join("movies.jsonl"), b"").unwrap();
    let err = prepare_dataset(d, &d.join("p3"), &small_config())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("movies.jsonl") && err.contains("the file is empty"),
        "{err}"
    );
}

/// A dataset whose `movies.jsonl` is a FIFO (nothing ever writes to it) or a device: named
/// and refused, never a hang or an endless read; nothing is prepared.
#[cfg(unix)]
#[test]
fn a_movies_file_that_is_a_fifo_or_a_device_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo-data");
    fs::create_dir(&fifo).unwrap();
    let path = std::ffi::CString::new(fifo.join("movies.jsonl").to_str().unwrap()).unwrap();
    // SAFETY: a valid path; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
    let device = dir.path().join("device-data");
    fs::create_dir(&device).unwrap();
    std::os::unix::fs::symlink("/dev/zero", device.join("movies.jsonl")).unwrap();
    for data in [&fifo, &device] {
        let out = dir.path().join("prepared");
        let err = prepare_dataset(data, &out, &small_config())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("movies.jsonl") && err.contains("not a regular file"),
            "{err}"
        );
        assert!(!out.exists(), "nothing prepared from {}", data.display());
    }
}

/// A prepared folder is named by the user too: its poster cache or samples as a FIFO are
/// refused by name when it is opened, not waited on.
#[cfg(unix)]
#[test]
fn a_prepared_folder_with_a_fifo_inside_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    synth::write_synthetic(&d.join("data"), 30, 2).unwrap();
    let fifo = std::ffi::CString::new(d.join("fifo").to_str().unwrap()).unwrap();
    // SAFETY: a valid path; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    for (k, name) in ["posters.bin", "samples.jsonl"].into_iter().enumerate() {
        let prepared = d.join(format!("prepared-{k}"));
        prepare_dataset(&d.join("data"), &prepared, &small_config()).unwrap();
        fs::remove_file(prepared.join(name)).unwrap();
        std::os::unix::fs::symlink(d.join("fifo"), prepared.join(name)).unwrap();
        let err = cinefuse_data::Prepared::open(&prepared)
            .err()
            .expect("refused")
            .to_string();
        assert!(
            err.contains(name) && err.contains("not a regular file"),
            "{err}"
        );
    }
}

#[test]
fn a_truncated_jpeg_is_a_flagged_poster() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir_all(d.join("posters")).unwrap();
    let img = image::RgbImage::from_fn(40, 60, |x, y| image::Rgb([x as u8 * 6, y as u8 * 4, 90]));
    img.save(d.join("posters/whole.jpg")).unwrap();
    let full = fs::read(d.join("posters/whole.jpg")).unwrap();
    fs::write(d.join("posters/cut.jpg"), &full[..full.len() * 2 / 3]).unwrap();
    write_lines(
        d,
        &[
            r#"{"id":"whole","rating":7.0,"genres":["Drama"],"poster":"posters/whole.jpg"}"#,
            r#"{"id":"cut","rating":7.0,"genres":["Drama"],"poster":"posters/cut.jpg"}"#,
        ],
    );
    let summary = prepare_dataset(d, &d.join("p"), &skipping()).unwrap();
    assert_eq!((summary.posters_cached, summary.posters_dropped), (1, 1));
    let bad = bad_records(&d.join("p"));
    assert!(
        bad[0]["reason"]
            .as_str()
            .unwrap()
            .contains("truncated JPEG"),
        "{bad:?}"
    );
}
