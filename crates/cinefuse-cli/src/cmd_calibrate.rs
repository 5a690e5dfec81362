//! `cinefuse calibrate`: an export's rating interval fitted again on rated movies of the
//! user's own source (`cinefuse_train::recalibrate`).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

#[derive(Args)]
pub struct CalibrateArgs {
    /// An exported model directory (left as it is).
    #[arg(long)]
    model: PathBuf,
    /// A JSONL file of movies with their `rating` (dataset format; poster paths are resolved
    /// relative to it): movies of the source the model will predict, none it trained on.
    #[arg(long)]
    jsonl: PathBuf,
    /// The model folder to write (a new folder, or an earlier export, which it replaces).
    #[arg(long)]
    out: PathBuf,
    /// auto, flex, wgpu, lavapipe or cuda (default: the config's `backend.kind`).
    #[arg(long)]
    backend: Option<String>,
}

pub fn calibrate(a: CalibrateArgs) -> Result<()> {
    let backend = a
        .backend
        .as_deref()
        .map(cinefuse_train::backend::parse_backend)
        .transpose()?;
    let r = cinefuse_train::recalibrate::recalibrate(&a.model, &a.jsonl, &a.out, backend)?;
    let groups: Vec<String> = r.groups.iter().map(|(g, n)| format!("{n} {g}")).collect();
    println!(
        "fitted the rating interval again on {} rated movies ({})",
        r.movies,
        groups.join(", ")
    );
    if let Some(k) = &r.kept {
        println!("{}", cinefuse_train::recalibrate::describe_kept(k));
    }
    if r.unrated > 0 {
        println!("{} movies without a rating were left out", r.unrated);
    }
    match &r.check {
        Some(c) => println!("{}", cinefuse_train::recalibrate::describe_check(c)),
        None => println!("too few movies to check a fit on half of them against the other half"),
    }
    println!(
        "wrote {}: the same model with that interval",
        a.out.display()
    );
    Ok(())
}
