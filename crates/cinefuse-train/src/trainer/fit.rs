//! The epochs of a run: one pass over the training data (with an exact checkpoint when
//! interrupted), validation and the metrics line, the best model and early stopping, and the
//! periodic checkpoints.

use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, Result};
use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::Dataset;
use burn::module::Module;
use cinefuse_data::dataset::MovieItem;
use cinefuse_model::CinefuseModel;
use indicatif::ProgressBar;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::interrupt::INTERRUPTED;
use super::setup::Trainer;
use super::shards::{ShardBatcher, ShardedBatch};
use super::step::check_loss;
use super::{RunSummary, batch_seed, epoch_seed, progress};
use crate::predictions::predict_dataset;
use crate::run_dir::*;
use crate::schedule::learning_rate;

/// How the training pass of an epoch ended.
struct Pass {
    /// Sums over the epoch's batches (this call's and, after a resume, the earlier ones):
    /// total, genre and rating loss times batch size, and movies seen.
    sums: LossSums,
    /// Movies an interrupted run had already seen in this epoch before it was resumed: not
    /// part of this call's time, so not of its rate.
    resumed_samples: usize,
    lr: f64,
    interrupted: bool,
}

impl Pass {
    /// Training movies per second since this call began the pass.
    fn rate(&self, seconds: f64) -> f64 {
        self.sums.samples.saturating_sub(self.resumed_samples) as f64 / seconds.max(1e-9)
    }
}

impl Trainer {
    /// Trains the remaining epochs; stops early, on Ctrl-C or after `stop_after_steps`, always
    /// with a checkpoint to resume from.
    pub fn fit(mut self) -> Result<RunSummary> {
        let (mut interrupted, mut stopped_early, mut steps_this_call) = (false, false, 0);
        while self.state.epoch < self.config.train.epochs && !interrupted && !stopped_early {
            let epoch = self.state.epoch + 1;
            let started = Instant::now();
            let pass = self.train_pass(epoch, &mut steps_this_call)?;
            if pass.interrupted && self.state.batches_into_epoch < self.steps_per_epoch {
                self.checkpoint_mid_epoch(pass.sums)?;
                interrupted = true;
                break;
            }
            let line = self.validate(epoch, &pass, started)?;
            self.log_epoch(epoch, &line)?;
            self.state.epoch = epoch;
            self.state.batches_into_epoch = 0;
            self.state.partial_sums = LossSums::default();
            if !self.pretraining(epoch) {
                stopped_early = self.update_best(epoch, &line)?;
            }
            interrupted = pass.interrupted || INTERRUPTED.load(Ordering::SeqCst);
            self.checkpoint_epoch(epoch, stopped_early || interrupted)?;
            if interrupted {
                println!(
                    "stopped after epoch {epoch}; resume with: cinefuse train --resume {}",
                    self.run_dir.display()
                );
            }
        }
        // Every way out of the loop checkpoints, which saves the best model; this is a guard.
        self.save_best()?;
        Ok(RunSummary {
            epochs_completed: self.state.epoch,
            best_epoch: self.state.best_epoch,
            best_value: self.state.best_value,
            stopped_early,
            interrupted,
            history: read_metrics(&self.run_dir)?,
            run_dir: self.run_dir,
        })
    }

    /// Per-modality pre-training: the first `pretrain_epochs` of a fused model.
    fn pretraining(&self, epoch: usize) -> bool {
        self.learner.model().is_fused() && epoch <= self.config.train.pretrain_epochs
    }

    /// One pass over the epoch's training batches, from where an interrupted pass stopped.
    fn train_pass(&mut self, epoch: usize, steps_this_call: &mut usize) -> Result<Pass> {
        let t = self.config.train.clone();
        let pretraining = self.pretraining(epoch);
        let rest = self.epoch_rest(epoch);
        let loader = DataLoaderBuilder::new(ShardBatcher::new(
            self.batcher.clone(),
            self.devices.clone(),
        ))
        .batch_size(t.batch_size)
        .num_workers(t.num_workers)
        .set_device(self.device.clone())
        .build(self.train_ds.reordered(&rest));
        // Several loader threads hand batches over in the order they finish, not the order of
        // the epoch: put them back in order, so that batch k is always the k-th slice of the
        // epoch's order (its dropout seed, and the point a mid-epoch resume continues from).
        let batch_of_first_id = self.batch_of_first_id(&rest);
        let pb = self.epoch_progress(epoch, pretraining);
        let started = Instant::now();
        let mut pass = Pass {
            sums: self.state.partial_sums,
            resumed_samples: self.state.partial_sums.samples,
            lr: 0.0,
            interrupted: false,
        };
        let mut pending = std::collections::BTreeMap::new();
        let mut next = 0usize;
        'batches: for batch in loader.iter() {
            let batch = batch.map_err(|e| anyhow::anyhow!("data loading failed: {e}"))?;
            let first = batch.shards[0]
                .ids
                .first()
                .map(String::as_str)
                .unwrap_or("");
            let k = batch_of_first_id.get(first).copied().unwrap_or(next);
            pending.insert(k, batch);
            while let Some(batch) = pending.remove(&next) {
                next += 1;
                self.train_step(batch, epoch, &mut pass)?;
                *steps_this_call += 1;
                pb.set_message(format!(
                    "loss {:.4} lr {:.2e} {:.0} samples/s",
                    pass.sums.mean(),
                    pass.lr,
                    pass.rate(started.elapsed().as_secs_f64())
                ));
                pb.inc(1);
                let budget_spent = self.stop_after_steps.is_some_and(|n| *steps_this_call >= n);
                if budget_spent || INTERRUPTED.load(Ordering::SeqCst) {
                    pass.interrupted = true;
                    break 'batches;
                }
            }
        }
        pb.finish_and_clear();
        Ok(pass)
    }

    /// Each batch's place in the epoch, keyed by the id of its first movie (`rest` in the
    /// epoch's order, cut into batches).
    fn batch_of_first_id(&self, rest: &[usize]) -> std::collections::HashMap<String, usize> {
        rest.chunks(self.config.train.batch_size)
            .enumerate()
            .map(|(k, chunk)| (self.train_ds.sample(chunk[0]).id.clone(), k))
            .collect()
    }

    /// The progress bar of `epoch`, at the batches a resumed run has already taken.
    fn epoch_progress(&self, epoch: usize, pretraining: bool) -> ProgressBar {
        let pb = progress(self.steps_per_epoch as u64);
        let phase = if pretraining { " (pretrain)" } else { "" };
        pb.set_prefix(format!("epoch {epoch}/{}{phase}", self.config.train.epochs));
        pb.set_position(self.state.batches_into_epoch as u64);
        pb
    }

    /// The training rows of `epoch` still to visit, in the epoch's order: the same seed and
    /// epoch give the same order, also after a resume, which skips the batches already taken.
    fn epoch_rest(&self, epoch: usize) -> Vec<usize> {
        let batch_size = self.config.train.batch_size;
        let mut order: Vec<usize> = (0..self.train_ds.len()).collect();
        order.shuffle(&mut StdRng::seed_from_u64(epoch_seed(
            self.config.seed,
            epoch,
        )));
        order.truncate(self.steps_per_epoch * batch_size);
        let skip = self.state.batches_into_epoch * batch_size;
        order.split_off(skip.min(order.len()))
    }

    /// One optimizer step on `batch` (skipped when f16 gradients overflow), its losses added
    /// to the pass's sums.
    fn train_step(&mut self, batch: ShardedBatch, epoch: usize, pass: &mut Pass) -> Result<()> {
        pass.lr = learning_rate(
            &self.config.schedule,
            self.config.optim.lr,
            self.state.step,
            self.total_steps,
            self.steps_per_epoch,
        );
        // Seeded per batch, so a resume at any batch draws the same dropout masks.
        let seed = batch_seed(self.config.seed, epoch, self.state.batches_into_epoch);
        let pretraining = self.pretraining(epoch);
        let step = self
            .learner
            .step(
                batch,
                pass.lr,
                pretraining,
                seed,
                &mut self.state.loss_scale,
            )
            .with_context(|| {
                format!(
                    "step {} failed; the last checkpoint is intact: cinefuse train --resume {}",
                    self.state.step + 1,
                    self.run_dir.display()
                )
            })?;
        let [total, genre, rating] = step.loss_sums;
        check_loss(
            total / step.rows as f64,
            self.state.step,
            self.learner.compute(),
        )?;
        pass.sums.total += total;
        pass.sums.genre += genre;
        pass.sums.rating += rating;
        pass.sums.samples += step.rows;
        if !step.applied {
            self.state.skipped_steps += 1;
        }
        self.state.step += 1;
        self.state.batches_into_epoch += 1;
        self.log_step(total / step.rows.max(1) as f64, pass.lr)
    }

    /// The step's loss, learning rate and f16 loss scale, to TensorBoard.
    fn log_step(&mut self, loss: f64, lr: f64) -> Result<()> {
        let Some(events) = self.events.as_mut() else {
            return Ok(());
        };
        let scale = self.state.loss_scale.map(|s| ("step/loss_scale", s.scale));
        let values = [("step/train_loss", loss), ("step/lr", lr)];
        events.scalars(self.state.step as u64, values.into_iter().chain(scale))
    }

    /// Every number of the epoch's metrics line, to TensorBoard under its own key.
    fn log_epoch(&mut self, epoch: usize, line: &EpochMetrics) -> Result<()> {
        let Some(events) = self.events.as_mut() else {
            return Ok(());
        };
        let scalars = line.scalars();
        events.scalars(epoch as u64, scalars.iter().map(|(k, v)| (k.as_str(), *v)))?;
        events.flush()
    }

    /// Model, optimizer and loop state under `checkpoints/NAME`, after the best model so far:
    /// a resume from this checkpoint finds the best model its state names.
    fn save_checkpoint(&mut self, name: &str) -> Result<()> {
        self.save_best()?;
        let l = &self.learner;
        let model = (l.model(), &self.config.model);
        save_checkpoint(&self.run_dir, model, &l.optim, &self.state, name)
    }

    /// Writes the best model kept in memory, if it is newer than the one in `best/`.
    fn save_best(&mut self) -> Result<()> {
        let Some((record, state)) = self.unsaved_best.take() else {
            return Ok(());
        };
        let w = CheckpointWriter::new(&self.run_dir.join(BEST_DIR))?;
        save_record(record, &w.staging.join(MODEL_FILE))?;
        write_json(&w.staging.join(STATE_FILE), &state)?;
        w.commit()
    }

    /// A checkpoint inside an epoch, with the partial loss sums, to resume exactly there.
    fn checkpoint_mid_epoch(&mut self, sums: LossSums) -> Result<()> {
        self.state.partial_sums = sums;
        self.save_checkpoint(&format!(
            "epoch-{:04}-step-{:07}",
            self.state.epoch, self.state.step
        ))?;
        println!(
            "checkpoint written at step {}; resume with: cinefuse train --resume {}",
            self.state.step,
            self.run_dir.display()
        );
        Ok(())
    }

    /// `model`'s predictions on the validation movies `movies`.
    fn predict_val(
        &self,
        model: &CinefuseModel,
        movies: impl Dataset<MovieItem> + 'static,
    ) -> crate::predictions::Predictions {
        let batch_size = self.config.train.eval_batch_size;
        let scorer = self.learner.scorer();
        predict_dataset(
            model,
            movies,
            &self.batcher,
            batch_size,
            &self.device,
            &scorer,
            &[],
        )
    }

    /// Validates the model after `epoch`, appends the metrics line and prints it.
    fn validate(&self, epoch: usize, pass: &Pass, started: Instant) -> Result<EpochMetrics> {
        let t = &self.config.train;
        let train_secs = started.elapsed().as_secs_f64();
        let model = self.learner.model().valid();
        let val = match &self.val_items {
            Some(items) => self.predict_val(&model, items.clone()),
            None => self.predict_val(&model, self.val_ds.clone()),
        };
        let gm = val.genre_metrics(
            &vec![0.5; self.shapes.n_genres],
            self.prepared.preprocessor.genre_names(),
        );
        let rm = val.rating_metrics();
        let secs = started.elapsed().as_secs_f64();
        let LossSums {
            total,
            genre,
            rating,
            samples: seen,
        } = pass.sums;
        let n = seen.max(1) as f64;
        let rate = pass.rate(train_secs);
        let line = EpochMetrics {
            epoch,
            step: self.state.step,
            lr: pass.lr,
            phase: if self.pretraining(epoch) {
                Phase::Pretrain
            } else {
                Phase::Train
            },
            train_loss: total / n,
            train_genre_loss: genre / n,
            train_rating_loss: rating / n,
            val_loss: val.loss,
            val_genre_loss: val.genre_loss,
            val_rating_loss: val.rating_loss,
            val_micro_f1: gm.micro_f1,
            val_macro_f1: gm.macro_f1,
            val_samples_f1: gm.samples_f1,
            val_map: gm.map,
            val_top1: gm.top1,
            val_mae: rm.mae,
            val_rmse: rm.rmse,
            val_r2: rm.r2,
            val_within_10pct: rm.within_10pct,
            epoch_seconds: secs,
            train_seconds: Some(train_secs),
            samples_per_sec: rate,
            loss_scale: self.state.loss_scale.map(|s| s.scale),
            skipped_steps: self.state.loss_scale.map(|_| self.state.skipped_steps),
        };
        append_metrics(&self.run_dir, &line)?;
        print_epoch(&line, t.epochs);
        Ok(line)
    }

    /// Keeps the best model by `train.monitor`; returns whether early stopping is due.
    fn update_best(&mut self, epoch: usize, line: &EpochMetrics) -> Result<bool> {
        let t = &self.config.train;
        let value = line.monitored(t.monitor);
        let keep_last = matches!(self.rows, TrainRows::All { .. });
        let better = match self.state.best_value {
            _ if keep_last => true,
            None => true,
            Some(b) if t.monitor.higher_is_better() => value > b + 1e-6,
            Some(b) => value < b - 1e-6,
        };
        if better {
            self.state.best_value = Some(value);
            self.state.best_epoch = epoch;
            self.state.epochs_without_improvement = 0;
            let record = model_record(self.learner.model(), &self.config.model)?;
            self.unsaved_best = Some((record, self.state.clone()));
            return Ok(false);
        }
        self.state.epochs_without_improvement += 1;
        let patience = t.early_stopping_patience;
        let stop = patience > 0 && self.state.epochs_without_improvement >= patience;
        if stop {
            println!(
                "early stopping: {} did not improve for {} epochs (best {:.4} at epoch {})",
                t.monitor.key(),
                self.state.epochs_without_improvement,
                self.state.best_value.unwrap_or(f64::NAN),
                self.state.best_epoch
            );
        }
        Ok(stop)
    }

    /// The periodic checkpoint after `epoch` (always the last one, and when stopping).
    fn checkpoint_epoch(&mut self, epoch: usize, stopping: bool) -> Result<()> {
        let t = &self.config.train;
        let due = epoch.is_multiple_of(t.checkpoint_every) || epoch == t.epochs || stopping;
        let keep = t.keep_checkpoints;
        if due {
            self.save_checkpoint(&format!("epoch-{epoch:04}"))?;
            prune_checkpoints(&self.run_dir, keep)?;
        }
        Ok(())
    }
}

/// The epoch's line on the terminal.
fn print_epoch(line: &EpochMetrics, epochs: usize) {
    let train_secs = line.train_seconds.unwrap_or_default();
    println!(
        "epoch {:>3}/{epochs}  train {:.4}  val {:.4} (genre {:.4}, rating {:.4})  micro-F1 {:.3}  top-1 {:.3}  MAE {:.3}  {:.1}s (training {train_secs:.1}s, {:.0} samples/s)",
        line.epoch,
        line.train_loss,
        line.val_loss,
        line.val_genre_loss,
        line.val_rating_loss,
        line.val_micro_f1,
        line.val_top1,
        line.val_mae,
        line.epoch_seconds,
        line.samples_per_sec,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resumed epoch's rate counts only the movies this call trained on.
    #[test]
    fn a_resumed_pass_rates_only_its_own_movies() {
        let mut pass = Pass {
            sums: LossSums {
                samples: 60,
                ..Default::default()
            },
            resumed_samples: 60,
            lr: 0.0,
            interrupted: false,
        };
        pass.sums.samples += 40;
        assert_eq!(pass.rate(10.0), 4.0);
        pass.resumed_samples = 0;
        assert_eq!(pass.rate(10.0), 10.0);
    }
}
