//! `import mmimdb | table | imdb-tsv`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use cinefuse_data::import::imdb_tsv::{TsvSources, import_imdb_tsv};
use cinefuse_data::import::mmimdb::import_mmimdb;
use cinefuse_data::import::table::{ExtraColumns, import_table, parse_mapping};
use cinefuse_data::import::{ImportReport, run_import};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum ImportKind {
    /// The MM-IMDb layout: DIR/dataset/<id>.json + <id>.jpeg, and split.json.
    Mmimdb {
        /// The MM-IMDb folder (dataset/<id>.json, <id>.jpeg and split.json).
        #[arg(long)]
        src: PathBuf,
        /// The dataset folder to write.
        #[arg(long)]
        out: PathBuf,
        /// Skip bad records and drop unreadable posters (listed in import_skipped.json) instead of
        /// stopping at the first.
        #[arg(long)]
        skip_bad: bool,
    },
    /// Any JSONL or CSV table of movies, with --map TARGET=SOURCE for renamed columns.
    Table {
        /// The table: JSONL, or CSV/TSV with a header line.
        #[arg(long)]
        src: PathBuf,
        /// The dataset folder to write.
        #[arg(long)]
        out: PathBuf,
        /// A dataset field read from a column of another name, e.g. --map id=imdb_id
        /// --map rating=imdb_rating (repeatable)
        #[arg(long = "map", value_name = "TARGET=SOURCE")]
        map: Vec<String>,
        /// A column to keep in each movie's `extra` values, for `[[data.features]]` (repeatable);
        /// `NAME=COLUMN` keeps it under NAME. A name a config cannot declare (spaces, say) has its
        /// other characters made `_`, and the import says so.
        #[arg(long = "extra", value_name = "COLUMN", conflicts_with = "extra_all")]
        extra: Vec<String>,
        /// Keep every column not read into a dataset field as an `extra` value.
        #[arg(long)]
        extra_all: bool,
        /// Skip bad rows and drop unreadable posters (listed in import_skipped.json) instead of
        /// stopping at the first.
        #[arg(long)]
        skip_bad: bool,
    },
    /// IMDb's non-commercial TSV tables (.tsv or .tsv.gz), joined on the title id.
    ImdbTsv {
        /// title.basics.tsv (or .tsv.gz): titles, years, runtimes and genres.
        #[arg(long)]
        basics: PathBuf,
        /// title.ratings.tsv (or .tsv.gz): ratings and vote counts.
        #[arg(long)]
        ratings: PathBuf,
        /// title.crew.tsv (or .tsv.gz): each title's directors by name id (optional).
        #[arg(long)]
        crew: Option<PathBuf>,
        /// name.basics to turn director ids into names.
        #[arg(long)]
        names: Option<PathBuf>,
        /// Title types to keep (comma-separated; empty keeps all).
        #[arg(long, default_value = "movie")]
        types: String,
        /// The dataset folder to write.
        #[arg(long)]
        out: PathBuf,
        /// Skip bad rows and drop unreadable posters (listed in import_skipped.json) instead of
        /// stopping at the first.
        #[arg(long)]
        skip_bad: bool,
    },
}

pub fn import(kind: ImportKind) -> Result<()> {
    let (report, out) = match kind {
        ImportKind::Mmimdb { src, out, skip_bad } => (
            run_import(&out, &[&src], |staging| {
                import_mmimdb(&src, staging, skip_bad)
            })?,
            out,
        ),
        ImportKind::Table {
            src,
            out,
            map,
            extra,
            extra_all,
            skip_bad,
        } => (table(&src, &out, (&map, extra, extra_all), skip_bad)?, out),
        ImportKind::ImdbTsv {
            basics,
            ratings,
            crew,
            names,
            types,
            out,
            skip_bad,
        } => {
            let optional = [crew.as_deref(), names.as_deref()];
            let report = imdb_tsv([&basics, &ratings], optional, &types, &out, skip_bad)?;
            (report, out)
        }
    };
    println!("{report}");
    for note in &report.notes {
        println!("note: {note}");
    }
    if !report.problems().is_empty() {
        println!(
            "skipped rows and dropped posters are listed in {}",
            out.join(cinefuse_data::import::SKIPPED_FILE).display()
        );
    }
    println!("dataset: {}", out.display());
    Ok(())
}

/// `import table`: the column mapping and the extra columns from their flags.
fn table(
    src: &Path,
    out: &Path,
    (map, extra, extra_all): (&[String], Vec<String>, bool),
    skip_bad: bool,
) -> Result<ImportReport> {
    let mapping = parse_mapping(map)?;
    let extra = match (extra_all, extra.is_empty()) {
        (true, _) => ExtraColumns::All,
        (false, false) => ExtraColumns::Named(extra),
        (false, true) => ExtraColumns::None,
    };
    Ok(run_import(out, &[src], |staging| {
        import_table(src, staging, &mapping, &extra, skip_bad)
    })?)
}

/// `import imdb-tsv`: the basics and ratings tables, then the optional crew and names tables;
/// `types` the comma-separated title types to keep.
fn imdb_tsv(
    [basics, ratings]: [&Path; 2],
    [crew, names]: [Option<&Path>; 2],
    types: &str,
    out: &Path,
    skip_bad: bool,
) -> Result<ImportReport> {
    let sources = TsvSources {
        basics,
        ratings,
        crew,
        names,
        types: types
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect(),
    };
    let inputs: Vec<&Path> = [basics, ratings]
        .into_iter()
        .chain([crew, names].into_iter().flatten())
        .collect();
    Ok(run_import(out, &inputs, |_| {
        import_imdb_tsv(&sources, skip_bad)
    })?)
}
