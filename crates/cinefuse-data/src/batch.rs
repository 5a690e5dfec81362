//! Batching: many `MovieItem`s → one `MovieBatch` of tensors with presence masks.

use burn::data::dataloader::batcher::Batcher;
use burn::prelude::*;

use crate::dataset::MovieItem;
use crate::tokenizer::PAD_ID;

/// Per-channel statistics used to normalize poster pixels (roughly those of movie posters).
pub const POSTER_MEAN: [f32; 3] = [0.45, 0.42, 0.40];
pub const POSTER_STD: [f32; 3] = [0.27, 0.26, 0.26];

/// Everything the model and the loss need for one batch. Masks are `1.0` for present.
#[derive(Debug, Clone)]
pub struct MovieBatch {
    pub ids: Vec<String>,
    /// `[B, 3, H, W]`, normalized; zeros where the poster is missing.
    pub posters: Tensor<4>,
    /// `[B]`
    pub poster_present: Tensor<1>,
    /// `[B, L]` token ids, `PAD_ID` after the end of each plot.
    pub tokens: Tensor<2, Int>,
    /// `[B, L]` `1.0` on real tokens (the attention mask).
    pub token_mask: Tensor<2>,
    /// `[B, L]` `true` on padding (Burn's transformer `mask_pad`).
    pub token_pad: Tensor<2, Bool>,
    /// `[B]`
    pub plot_present: Tensor<1>,
    /// `[B, N]` scaled numeric features and `[B, N]` missing indicators.
    pub numeric: Tensor<2>,
    pub numeric_missing: Tensor<2>,
    /// `[B, C]` categorical ids.
    pub categorical: Tensor<2, Int>,
    /// `[B, G]` multi-hot targets and `[B]` presence of a genre label.
    pub genres: Tensor<2>,
    pub genres_present: Tensor<1>,
    /// `[B]` rating targets (0 where missing) and `[B]` presence.
    pub rating: Tensor<1>,
    pub rating_present: Tensor<1>,
    /// `[B, D]` cached backbone features (frozen pretrained encoders) when any item has them;
    /// zero rows for the items without (movies missing that modality).
    pub poster_features: Option<Tensor<2>>,
    pub plot_features: Option<Tensor<2>>,
    /// The plot backbone's frozen layers' output on the batch's token rows, when cached.
    pub plot_states: Option<PlotStates>,
    /// The poster backbone's frozen blocks' output, when cached.
    pub poster_states: Option<PosterStates>,
}

/// Feature maps entering block `from_block` of the poster backbone: `[B, C, H, W]`, zeros for
/// movies without a poster (masked out by the model).
#[derive(Debug, Clone)]
pub struct PosterStates {
    pub from_block: usize,
    pub maps: Tensor<4>,
}

/// Token states entering layer `from_layer` of the plot backbone: `[B, L, D]`, `L` the
/// batch's token rows (zeros after each movie's own).
#[derive(Debug, Clone)]
pub struct PlotStates {
    pub from_layer: usize,
    pub states: Tensor<3>,
}

impl MovieBatch {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// On a GPU backend, plot batches are padded to a multiple of this many tokens. Its kernels
/// are compiled and autotuned for each new tensor shape (about 3 s per shape for the
/// quickstart's training step on an H200, BENCHMARKS.md), and a batch padded to its own
/// longest plot is nearly always a new shape: this bounds them to `max_tokens / 16`. The
/// padding is masked, so the outputs are the same.
pub const GPU_TOKEN_BUCKET: usize = 16;

/// Builds `MovieBatch`es; knows the poster size and the token length cap.
#[derive(Debug, Clone)]
pub struct MovieBatcher {
    pub image_height: usize,
    pub image_width: usize,
    pub max_tokens: usize,
    /// Pad plot batches to a multiple of this many tokens (at most `max_tokens`). `None`:
    /// `GPU_TOKEN_BUCKET` on a GPU backend, the longest plot on flex (no per-shape cost
    /// there, and every padded token costs CPU time).
    pub token_bucket: Option<usize>,
}

impl MovieBatcher {
    pub fn new(image_height: usize, image_width: usize, max_tokens: usize) -> Self {
        Self {
            image_height,
            image_width,
            max_tokens,
            token_bucket: None,
        }
    }

    /// The padded length of a batch whose longest plot fills `longest` rows, on `device`.
    fn padded_length(&self, longest: usize, device: &Device) -> usize {
        let on_flex = device.clone().inner() == Device::flex();
        let bucket = self
            .token_bucket
            .unwrap_or(if on_flex { 1 } else { GPU_TOKEN_BUCKET });
        longest
            .next_multiple_of(bucket.max(1))
            .min(self.max_tokens.max(longest))
    }
}

fn ones_where(flags: impl Iterator<Item = bool>) -> Vec<f32> {
    flags.map(|b| if b { 1.0 } else { 0.0 }).collect()
}

impl Batcher<MovieItem, MovieBatch> for MovieBatcher {
    fn batch(&self, items: Vec<MovieItem>, device: &Device) -> MovieBatch {
        let b = items.len();

        let (pixels, h, w) = self.poster_pixels(&items);
        let (tokens, mask, len) = self.padded_tokens(&items, device);
        let n_num = items.first().map_or(0, |it| it.numeric.len());
        let n_cat = items.first().map_or(0, |it| it.categorical.len());
        let n_gen = items.first().map_or(0, |it| it.genres.len());
        let flat = |f: &dyn Fn(&MovieItem) -> &[f32]| -> Vec<f32> {
            items.iter().flat_map(|it| f(it).iter().copied()).collect()
        };
        let numeric = flat(&|it| &it.numeric);
        let numeric_missing = flat(&|it| &it.numeric_missing);
        let genres = flat(&|it| &it.genres);
        let categorical: Vec<i64> = items
            .iter()
            .flat_map(|it| it.categorical.iter().map(|c| i64::from(*c)))
            .collect();

        let f1 = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [b]), device);
        let f2 = |v: Vec<f32>, cols: usize| {
            Tensor::<2>::from_data(TensorData::new(v, [b, cols]), device)
        };
        let i2 = |v: Vec<i64>, cols: usize| {
            Tensor::<2, Int>::from_data(TensorData::new(v, [b, cols]), device)
        };
        let token_mask = f2(mask, len);
        MovieBatch {
            ids: items.iter().map(|it| it.id.clone()).collect(),
            posters: Tensor::<4>::from_data(TensorData::new(pixels, [b, 3, h, w]), device),
            poster_present: f1(ones_where(items.iter().map(|it| {
                it.poster.is_some() || it.poster_features.is_some() || it.poster_states.is_some()
            }))),
            tokens: i2(tokens, len),
            token_pad: token_mask.clone().equal_elem(0.0),
            token_mask,
            plot_present: f1(ones_where(
                items
                    .iter()
                    .map(|it| it.plot_present && !it.tokens.is_empty()),
            )),
            numeric: f2(numeric, n_num),
            numeric_missing: f2(numeric_missing, n_num),
            categorical: i2(categorical, n_cat),
            genres: f2(genres, n_gen),
            genres_present: f1(ones_where(items.iter().map(|it| it.genres_present))),
            rating: f1(items.iter().map(|it| it.rating.unwrap_or(0.0)).collect()),
            rating_present: f1(ones_where(items.iter().map(|it| it.rating.is_some()))),
            poster_features: stack_features(&items, |it| it.poster_features.as_deref(), device),
            plot_features: stack_features(&items, |it| it.plot_features.as_deref(), device),
            plot_states: self.stack_states(&items, len, device),
            poster_states: stack_poster_maps(&items, device),
        }
    }
}

impl MovieBatcher {
    /// Posters: u8 CHW → normalized f32, built in one host buffer (one upload), with their
    /// height and width. A batch without any pixels (cached poster features) gets a 1×1
    /// placeholder, not B×3×H×W zeros.
    fn poster_pixels(&self, items: &[MovieItem]) -> (Vec<f32>, usize, usize) {
        let b = items.len();
        let any_pixels = items.iter().any(|it| it.poster.is_some());
        let (h, w) = if any_pixels {
            (self.image_height, self.image_width)
        } else {
            (1, 1)
        };
        let plane = h * w;
        let mut pixels = vec![0f32; b * 3 * plane];
        for (i, item) in items.iter().enumerate() {
            if let Some(p) = &item.poster {
                assert_eq!(
                    p.len(),
                    3 * plane,
                    "poster of {} has the wrong size",
                    item.id
                );
                let dst = &mut pixels[i * 3 * plane..(i + 1) * 3 * plane];
                for c in 0..3 {
                    let (m, s) = (POSTER_MEAN[c], POSTER_STD[c]);
                    for (d, v) in dst[c * plane..(c + 1) * plane]
                        .iter_mut()
                        .zip(&p[c * plane..(c + 1) * plane])
                    {
                        *d = (f32::from(*v) / 255.0 - m) / s;
                    }
                }
            }
        }
        (pixels, h, w)
    }

    /// `[B, len, D]` from per-item token states, each padded with zero rows to `len`; `None`
    /// when no item has any. Each block covers exactly its item's token rows (one for a movie
    /// without tokens), and one batch's blocks come from one table (one layer, one width).
    fn stack_states(&self, items: &[MovieItem], len: usize, device: &Device) -> Option<PlotStates> {
        let first = items.iter().find_map(|it| it.plot_states.as_ref())?;
        let (from_layer, dim) = (first.from_layer, first.dim);
        let mut values = vec![0f32; items.len() * len * dim];
        for (i, item) in items.iter().enumerate() {
            let rows = self.token_rows(item);
            let block = item.plot_states.as_ref();
            assert!(
                block.is_some_and(|b| {
                    b.from_layer == from_layer && b.dim == dim && b.values.len() == rows * dim
                }),
                "token states of {} do not match its tokens",
                item.id
            );
            let at = i * len * dim;
            values[at..at + rows * dim].copy_from_slice(&block.expect("checked").values);
        }
        let states = Tensor::from_data(TensorData::new(values, [items.len(), len, dim]), device);
        Some(PlotStates { from_layer, states })
    }

    /// How many token rows `item` fills in a batch: its tokens up to `max_tokens`, at least
    /// one (a movie without a plot keeps its first position).
    pub fn token_rows(&self, item: &MovieItem) -> usize {
        item.tokens.len().min(self.max_tokens).max(1)
    }

    /// Token ids padded to the longest plot in the batch (at least 1; rounded up on a GPU,
    /// `padded_length`), the mask of real tokens, and the padded length.
    fn padded_tokens(&self, items: &[MovieItem], device: &Device) -> (Vec<i64>, Vec<f32>, usize) {
        let b = items.len();
        let longest = items
            .iter()
            .map(|it| self.token_rows(it))
            .max()
            .unwrap_or(1);
        let len = self.padded_length(longest, device);
        let mut tokens = vec![PAD_ID as i64; b * len];
        let mut mask = vec![0f32; b * len];
        for (i, item) in items.iter().enumerate() {
            for (j, t) in item.tokens.iter().take(len).enumerate() {
                tokens[i * len + j] = i64::from(*t);
                mask[i * len + j] = 1.0;
            }
        }
        (tokens, mask, len)
    }
}

/// `[B, C, H, W]` from per-item poster maps, zeros for items without a poster; `None` when no
/// item has one. One batch's maps come from one table (one block, one shape).
fn stack_poster_maps(items: &[MovieItem], device: &Device) -> Option<PosterStates> {
    let first = items.iter().find_map(|it| it.poster_states.as_ref())?;
    let (from_block, [c, h, w]) = (first.from_block, first.shape);
    for (item, map) in items
        .iter()
        .filter_map(|it| Some((it, it.poster_states.as_ref()?)))
    {
        assert!(
            map.from_block == from_block && map.shape == first.shape,
            "the poster map of {} does not match the batch's",
            item.id
        );
    }
    let rows = stack_features(
        items,
        |it| it.poster_states.as_ref().map(|m| m.values.as_slice()),
        device,
    )?;
    let maps = rows.reshape([items.len(), c, h, w]);
    Some(PosterStates { from_block, maps })
}

/// `[B, D]` from per-item feature vectors, zeros for items without (movies missing that
/// modality, masked out by the model); `None` when no item has any.
fn stack_features(
    items: &[MovieItem],
    get: impl Fn(&MovieItem) -> Option<&[f32]>,
    device: &Device,
) -> Option<Tensor<2>> {
    let dim = items.iter().find_map(&get)?.len();
    let mut values = vec![0f32; items.len() * dim];
    for (i, item) in items.iter().enumerate() {
        if let Some(f) = get(item) {
            assert_eq!(
                f.len(),
                dim,
                "cached features of {} have another size",
                item.id
            );
            values[i * dim..(i + 1) * dim].copy_from_slice(f);
        }
    }
    Some(Tensor::from_data(
        TensorData::new(values, [items.len(), dim]),
        device,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plot(n: u32) -> MovieItem {
        MovieItem {
            id: format!("p{n}"),
            tokens: (1..=n).collect(),
            plot_present: true,
            ..MovieItem::default()
        }
    }

    #[test]
    fn plot_batches_pad_to_the_longest_plot_on_flex_and_to_a_bucket_when_asked() {
        let flex = Device::flex();
        let tight = MovieBatcher::new(2, 2, 40);
        let dims = |b: &MovieBatcher, plots: &[u32]| {
            let items = plots.iter().map(|n| plot(*n)).collect();
            let batch = b.batch(items, &flex);
            let real = batch.token_mask.clone().sum().into_scalar::<f32>();
            assert_eq!(
                real as u32,
                plots.iter().sum::<u32>(),
                "the mask marks real tokens"
            );
            batch.tokens.dims()
        };
        assert_eq!(dims(&tight, &[3, 5]), [2, 5]);
        let bucketed = MovieBatcher {
            token_bucket: Some(GPU_TOKEN_BUCKET),
            ..tight.clone()
        };
        assert_eq!(dims(&bucketed, &[3, 5]), [2, 16]);
        assert_eq!(dims(&bucketed, &[17]), [1, 32]);
        // Never past max_tokens.
        assert_eq!(dims(&bucketed, &[35]), [1, 40]);
    }
}
