//! The tree evaluator: trees compiled to flat, cache-friendly arrays.
//!
//! Trees up to [`MAX_PADDED_DEPTH`] deep are padded to complete binary trees
//! of the forest's depth and stored heap-style (children of `i` are `2i+1`
//! and `2i+2`). A leaf above the bottom becomes a chain of pass-through nodes
//! (threshold +inf, missing goes left), so every row takes exactly `depth`
//! steps per tree with no data-dependent branch: the CPU overlaps many trees
//! at once. 250 trees of depth 6 take 126 KB of nodes and 64 KB of leaves.
//! Deeper trees (rare; XGBoost lossguide) use a plain pointer layout.

use super::tree::Tree;

/// Deepest tree the padded layout accepts (2^10 leaves per tree).
pub const MAX_PADDED_DEPTH: usize = 10;

const DEFAULT_LEFT: u32 = 1 << 31;

#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct Split {
    /// Feature index, with bit 31 set when missing values go left.
    feature: u32,
    threshold: f32,
}

#[derive(Debug, Clone)]
enum Layout {
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
        let layout = if depth <= MAX_PADDED_DEPTH {
            let inner = (1usize << depth) - 1;
            let mut splits = Vec::with_capacity(trees.len() * inner);
            let mut leaves = Vec::with_capacity(trees.len() * (inner + 1));
            for t in trees {
                let (s, l) = pad(t, depth);
                splits.extend(s);
                leaves.extend(l);
            }
            Layout::Padded {
                depth,
                splits,
                leaves,
            }
        } else {
            Layout::Pointer {
                trees: trees.to_vec(),
            }
        };
        Forest {
            n_features,
            n_trees: trees.len(),
            base_score,
            layout,
        }
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
        assert!(
            row.len() >= self.n_features,
            "row has {} features, model needs {}",
            row.len(),
            self.n_features
        );
        match &self.layout {
            Layout::Padded {
                depth,
                splits,
                leaves,
            } => {
                let inner = (1usize << depth) - 1;
                let mut sum = 0f32;
                for (s, l) in splits
                    .chunks_exact(inner)
                    .zip(leaves.chunks_exact(inner + 1))
                {
                    let mut i = 0usize;
                    for _ in 0..*depth {
                        let n = s[i];
                        let x = row[(n.feature & !DEFAULT_LEFT) as usize];
                        let left = (x < n.threshold) as usize
                            | ((x.is_nan() as usize) & (n.feature >> 31) as usize);
                        i = 2 * i + 2 - left;
                    }
                    sum += l[i - inner];
                }
                self.base_score + sum
            }
            Layout::Pointer { trees } => {
                self.base_score + trees.iter().map(|t| t.predict(row)).sum::<f32>()
            }
        }
    }

    /// Raw outputs for many rows (row-major, `n_features` per row) into `out`.
    pub fn predict_batch(&self, rows: &[f32], out: &mut [f32]) {
        let w = self.n_features.max(1);
        assert_eq!(
            rows.len(),
            out.len() * w,
            "batch holds {} values, expected {} rows x {w}",
            rows.len(),
            out.len()
        );
        for (row, o) in rows.chunks_exact(w).zip(out.iter_mut()) {
            *o = self.predict_row(row);
        }
    }
}

/// Pad one tree to a complete tree of `depth`: (splits, leaves).
fn pad(t: &Tree, depth: usize) -> (Vec<Split>, Vec<f32>) {
    let inner = (1usize << depth) - 1;
    let mut splits = vec![
        Split {
            feature: DEFAULT_LEFT,
            threshold: f32::INFINITY
        };
        inner
    ];
    let mut leaves = vec![0f32; inner + 1];
    // (heap slot, source node or leaf value carried down)
    let mut stack = vec![(0usize, 0usize)];
    while let Some((slot, node)) = stack.pop() {
        if slot >= inner {
            leaves[slot - inner] = t.value[node];
            continue;
        }
        if t.is_leaf(node) {
            // pass-through: always left (threshold +inf, NaN left); the right
            // subtree is unreachable but filled for completeness.
            stack.push((2 * slot + 1, node));
            stack.push((2 * slot + 2, node));
        } else {
            let dl = if t.default_left[node] {
                DEFAULT_LEFT
            } else {
                0
            };
            splits[slot] = Split {
                feature: t.feature[node] | dl,
                threshold: t.threshold[node],
            };
            stack.push((2 * slot + 1, t.left[node] as usize));
            stack.push((2 * slot + 2, t.right[node] as usize));
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
        let trees = vec![small(), Tree::leaf(0.5), small()];
        for t in &trees {
            t.validate(2).unwrap();
        }
        let f = Forest::compile(&trees, 10.0, 2);
        let rows = [
            [0.0, 0.0],
            [0.0, 9.0],
            [2.0, 0.0],
            [f32::NAN, 0.0],
            [0.0, f32::NAN],
            [1.0, 5.0],
        ];
        for r in rows {
            let want = 10.0 + trees.iter().map(|t| t.predict(&r)).sum::<f32>();
            assert_eq!(f.predict_row(&r), want, "row {r:?}");
        }
        assert_eq!(f.predict_row(&[f32::NAN, f32::NAN]), 10.0 + 3.0 + 0.5 + 3.0);
    }
}
