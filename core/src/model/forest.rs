//! The tree evaluator: trees compiled to flat, cache-friendly arrays.
//!
//! Trees up to [`MAX_PADDED_DEPTH`] deep (over at most [`MAX_PADDED_FEATURES`]
//! inputs) are padded to complete binary trees of the forest's depth and
//! stored heap-style: the children of slot `i` are `2i+1` and `2i+2`. A leaf
//! above the bottom becomes pass-through nodes whose two subtrees hold the
//! same leaf. Every row then takes exactly `depth` steps per tree with no
//! data-dependent branch, and trees are stepped [`LANES`] at a time so the
//! CPU keeps many independent loads in flight.
//!
//! One comparison per step, missing values included: the row is extended to
//! `[x, -x]`. A node whose missing values go left tests `x >= t` (false for
//! NaN) and keeps its children in place; a node whose missing values go
//! right tests `-x >= nextup(-t)` (the same as `x < t`, false for NaN) and
//! stores its children swapped. Either way: next = `2i + 1 + test`, and the
//! decisions are exactly XGBoost's `x < t` with default directions.
//! 250 trees of depth 6 take 128 KB of nodes and 64 KB of leaves.
//! Deeper or wider models use a plain pointer walk.

use super::tree::Tree;

/// Deepest tree the padded layout accepts (2^10 leaves per tree).
pub const MAX_PADDED_DEPTH: usize = 10;
/// Most inputs the padded layout accepts (the extended row lives on the stack).
pub const MAX_PADDED_FEATURES: usize = 256;
/// Trees stepped side by side.
const LANES: usize = 16;
/// Extended row buffer: `[x, -x]`, a power of two so indices can be masked.
const ROW_BUF: usize = 2 * MAX_PADDED_FEATURES;

#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct Split {
    /// Index into the extended row `[x, -x]`.
    feature: u32,
    threshold: f32,
}

#[derive(Debug, Clone)]
enum Layout {
    /// `2^depth` split slots (the last unused) and `2^depth` leaves per tree.
    Padded {
        depth: usize,
        splits: Vec<Split>,
        leaves: Vec<f32>,
    },
    Pointer {
        trees: Vec<Tree>,
    },
}

/// A compiled ensemble: `base_score + sum of tree outputs`.
#[derive(Debug, Clone)]
pub struct Forest {
    n_features: usize,
    n_trees: usize,
    base_score: f32,
    layout: Layout,
}

impl Forest {
    /// Compile trees (already validated against `n_features`).
    pub fn compile(trees: &[Tree], base_score: f32, n_features: usize) -> Self {
        let depth = trees.iter().map(Tree::depth).max().unwrap_or(0).max(1);
        let layout = if depth <= MAX_PADDED_DEPTH && n_features <= MAX_PADDED_FEATURES {
            let width = 1usize << depth;
            let mut splits = Vec::with_capacity(trees.len() * width);
            let mut leaves = Vec::with_capacity(trees.len() * width);
            for t in trees {
                let (s, l) = pad(t, depth, n_features);
                splits.extend(s);
                leaves.extend(l);
            }
            Layout::Padded { depth, splits, leaves }
        } else {
            Layout::Pointer { trees: trees.to_vec() }
        };
        Forest { n_features, n_trees: trees.len(), base_score, layout }
    }

    pub fn n_features(&self) -> usize {
        self.n_features
    }

    pub fn n_trees(&self) -> usize {
        self.n_trees
    }

    pub fn base_score(&self) -> f32 {
        self.base_score
    }

    /// Raw model output for one row of `n_features` values (NaN = missing).
    ///
    /// # Panics
    /// If `row` is shorter than `n_features`.
    #[inline]
    pub fn predict_row(&self, row: &[f32]) -> f32 {
        assert!(row.len() >= self.n_features, "row has {} features, model needs {}", row.len(), self.n_features);
        match &self.layout {
            Layout::Padded { depth, splits, leaves } => {
                let mut buf = [0f32; ROW_BUF];
                let nf = self.n_features;
                buf[..nf].copy_from_slice(&row[..nf]);
                for (neg, x) in buf[nf..2 * nf].iter_mut().zip(&row[..nf]) {
                    *neg = -x;
                }
                let base = self.base_score;
                match depth {
                    1 => padded::<2>(1, base, splits, leaves, &buf),
                    2 => padded::<4>(2, base, splits, leaves, &buf),
                    3 => padded::<8>(3, base, splits, leaves, &buf),
                    4 => padded::<16>(4, base, splits, leaves, &buf),
                    5 => padded::<32>(5, base, splits, leaves, &buf),
                    6 => padded::<64>(6, base, splits, leaves, &buf),
                    7 => padded::<128>(7, base, splits, leaves, &buf),
                    8 => padded::<256>(8, base, splits, leaves, &buf),
                    9 => padded::<512>(9, base, splits, leaves, &buf),
                    _ => padded::<1024>(10, base, splits, leaves, &buf),
                }
            }
            Layout::Pointer { trees } => trees.iter().fold(self.base_score, |acc, t| acc + t.predict(row)),
        }
    }

    /// Raw outputs for many rows (row-major, `n_features` per row) into `out`.
    pub fn predict_batch(&self, rows: &[f32], out: &mut [f32]) {
        let w = self.n_features.max(1);
        assert_eq!(rows.len(), out.len() * w, "batch holds {} values, expected {} rows x {w}", rows.len(), out.len());
        for (row, o) in rows.chunks_exact(w).zip(out.iter_mut()) {
            *o = self.predict_row(row);
        }
    }
}

/// One step down a padded tree whose `W` slots (a power of two) start at
/// `s[at]`; the masks let the compiler drop bounds checks.
#[inline(always)]
fn step<const W: usize>(s: &[Split], at: usize, row: &[f32; ROW_BUF], i: usize) -> usize {
    let n = s[at + (i & (W - 1))];
    2 * i + 1 + (row[n.feature as usize & (ROW_BUF - 1)] >= n.threshold) as usize
}

/// Sum of all padded trees of `depth` (`W = 2^depth`) for one extended row.
/// Leaves are added in tree order starting from the base score, as XGBoost
/// does, so imported models give the same floats.
#[inline(always)]
fn padded<const W: usize>(depth: usize, base: f32, splits: &[Split], leaves: &[f32], row: &[f32; ROW_BUF]) -> f32 {
    let mut sum = base;
    let n_trees = leaves.len() / W;
    let mut t = 0;
    while t + LANES <= n_trees {
        let s = &splits[t * W..][..LANES * W];
        let l = &leaves[t * W..][..LANES * W];
        let mut idx = [0usize; LANES];
        // depth stays a runtime loop: unrolling it too makes the code too big
        // for the CPU's decoded-instruction cache
        for _ in 0..depth {
            for (lane, i) in idx.iter_mut().enumerate() {
                *i = step::<W>(s, lane * W, row, *i);
            }
        }
        for (lane, i) in idx.iter().enumerate() {
            sum += l[lane * W + ((i - (W - 1)) & (W - 1))];
        }
        t += LANES;
    }
    for t in t..n_trees {
        let (s, l) = (&splits[t * W..][..W], &leaves[t * W..][..W]);
        let mut i = 0;
        for _ in 0..depth {
            i = step::<W>(s, 0, row, i);
        }
        sum += l[(i - (W - 1)) & (W - 1)];
    }
    sum
}

/// Smallest f32 greater than `x` (for finite `x`; `f32::next_up` needs Rust 1.86).
fn next_up(x: f32) -> f32 {
    if x.is_nan() || x == f32::INFINITY {
        return x;
    }
    if x == 0.0 {
        return f32::from_bits(1);
    }
    let b = x.to_bits();
    f32::from_bits(if x > 0.0 { b + 1 } else { b - 1 })
}

/// Pad one tree to a complete tree of `depth`: (`2^depth` split slots,
/// `2^depth` leaves).
fn pad(t: &Tree, depth: usize, n_features: usize) -> (Vec<Split>, Vec<f32>) {
    let width = 1usize << depth;
    let inner = width - 1;
    let pass = Split { feature: 0, threshold: f32::INFINITY };
    let mut splits = vec![pass; width];
    let mut leaves = vec![0f32; width];
    // (heap slot, source node)
    let mut stack = vec![(0usize, 0usize)];
    while let Some((slot, node)) = stack.pop() {
        if slot >= inner {
            leaves[slot - inner] = t.value[node];
            continue;
        }
        let (first, second) = (2 * slot + 1, 2 * slot + 2);
        if t.is_leaf(node) {
            // pass-through: both subtrees carry the same leaf
            stack.push((first, node));
            stack.push((second, node));
        } else if t.default_left[node] {
            // test x >= t: false (and NaN) -> first = left
            splits[slot] = Split { feature: t.feature[node], threshold: t.threshold[node] };
            stack.push((first, t.left[node] as usize));
            stack.push((second, t.right[node] as usize));
        } else {
            // test -x >= nextup(-t), i.e. x < t: false (and NaN) -> first = right
            let feature = t.feature[node] + n_features as u32;
            splits[slot] = Split { feature, threshold: next_up(-t.threshold[node]) };
            stack.push((first, t.right[node] as usize));
            stack.push((second, t.left[node] as usize));
        }
    }
    (splits, leaves)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tree::LEAF;

    /// x0 < 1 ? (x1 < 5 ? 1 : 2) : 3, missing x0 -> right, missing x1 -> left
    fn small() -> Tree {
        Tree {
            feature: vec![0, 1, 0, 0, 0],
            threshold: vec![1.0, 5.0, 0.0, 0.0, 0.0],
            default_left: vec![false, true, false, false, false],
            left: vec![1, 3, LEAF, LEAF, LEAF],
            right: vec![2, 4, LEAF, LEAF, LEAF],
            value: vec![0.0, 0.0, 3.0, 1.0, 2.0],
        }
    }

    #[test]
    fn padded_layout_agrees_with_tree_walk() {
        let mut trees = vec![small(), Tree::leaf(0.5), small()];
        // enough trees to fill the side-by-side lanes and leave a remainder
        for k in 0..10 {
            let mut t = small();
            t.threshold[0] = k as f32 * 0.3 - 1.0;
            t.threshold[1] = -0.0;
            t.default_left[0] = k % 2 == 0;
            trees.push(t);
        }
        for t in &trees {
            t.validate(2).unwrap();
        }
        let f = Forest::compile(&trees, 10.0, 2);
        let rows = [[0.0, 0.0], [0.0, 9.0], [2.0, 0.0], [f32::NAN, 0.0], [0.0, f32::NAN], [1.0, 5.0]];
        for r in rows {
            let want = trees.iter().fold(10.0, |acc, t| acc + t.predict(&r));
            assert_eq!(f.predict_row(&r), want, "row {r:?}");
        }
        let two = Forest::compile(&trees[..3], 10.0, 2);
        assert_eq!(two.predict_row(&[f32::NAN, f32::NAN]), 10.0 + 3.0 + 0.5 + 3.0);
    }
}
