//! Growing one tree, depth-wise, from gradient/hessian histograms.
//!
//! Per node: a histogram of (sum gradient, sum hessian) per feature and bin.
//! Only the smaller child's histogram is built from its rows; the larger
//! child's is the parent's minus the smaller's (the usual subtraction trick),
//! so each level touches at most half the rows.

use gridcast_core::model::{LEAF, Tree};
use rayon::prelude::*;

use super::binning::{Cuts, MISSING_BIN};

/// Histogram: `n_features * 256` pairs of (gradient, hessian) sums.
type Hist = Vec<[f64; 2]>;

/// Tree shape knobs.
#[derive(Debug, Clone, Copy)]
pub struct GrowParams {
    pub max_depth: usize,
    pub min_child_weight: f64,
    pub lambda: f64,
    pub min_split_gain: f64,
}

/// A grown tree: float thresholds for serving, bin thresholds for training.
pub struct GrownTree {
    pub tree: Tree,
    pub bin: Vec<u8>,
    /// Rows (of those given) in each leaf: (node index, rows).
    pub leaves: Vec<(usize, Vec<u32>)>,
}

impl GrownTree {
    /// Leaf node a binned row lands in.
    #[inline]
    pub fn leaf_of(&self, row_bins: &[u8]) -> usize {
        let t = &self.tree;
        let mut i = 0usize;
        while t.left[i] != LEAF {
            let b = row_bins[t.feature[i] as usize];
            let left = if b == MISSING_BIN { t.default_left[i] } else { b <= self.bin[i] };
            i = if left { t.left[i] } else { t.right[i] } as usize;
        }
        i
    }
}

struct Split {
    gain: f64,
    feature: usize,
    bin: u8,
    default_left: bool,
}

struct Work {
    node: usize,
    rows: Vec<u32>,
    hist: Hist,
    depth: usize,
}

/// Grow a tree on `rows`; leaf values are left at the Newton step
/// `-G/(H+lambda)` (the caller may replace them, e.g. with medians).
/// `bins` is row-major (for histograms), `columns` the same bins
/// feature-major (for partitioning: one feature of many rows is then read
/// from consecutive bytes).
pub fn grow(
    bins: &[u8],
    columns: &[u8],
    nf: usize,
    cuts: &Cuts,
    gh: &[[f32; 2]],
    rows: Vec<u32>,
    p: &GrowParams,
) -> GrownTree {
    let mut t = GrownTree {
        tree: Tree {
            feature: vec![],
            threshold: vec![],
            default_left: vec![],
            left: vec![],
            right: vec![],
            value: vec![],
        },
        bin: vec![],
        leaves: vec![],
    };
    new_node(&mut t);
    let hist = build_hist(bins, nf, &rows, gh);
    let mut stack = vec![Work { node: 0, rows, hist, depth: 0 }];
    while let Some(w) = stack.pop() {
        let (g, h) = totals(&w.hist, nf);
        let split = if w.depth < p.max_depth { best_split(&w.hist, nf, cuts, g, h, p) } else { None };
        let Some(s) = split else {
            t.tree.value[w.node] = (-g / (h + p.lambda)) as f32;
            t.leaves.push((w.node, w.rows));
            continue;
        };
        let (l, r) = (new_node(&mut t), new_node(&mut t));
        let n = w.node;
        t.tree.feature[n] = s.feature as u32;
        t.tree.threshold[n] = cuts.threshold(s.feature, s.bin);
        t.tree.default_left[n] = s.default_left;
        t.tree.left[n] = l as u32;
        t.tree.right[n] = r as u32;
        t.bin[n] = s.bin;
        let n_rows = bins.len() / nf;
        let column = &columns[s.feature * n_rows..(s.feature + 1) * n_rows];
        let go_left = |row: u32| {
            let b = column[row as usize];
            if b == MISSING_BIN { s.default_left } else { b <= s.bin }
        };
        let (lrows, rrows) = partition(&w.rows, go_left);
        drop(w.rows);
        if w.depth + 1 >= p.max_depth {
            // children are leaves: only their sums are needed, not histograms
            for (node, rows) in [(l, lrows), (r, rrows)] {
                let (g, h) = rows.iter().fold((0.0, 0.0), |(g, h), &i| {
                    let [gi, hi] = gh[i as usize];
                    (g + gi as f64, h + hi as f64)
                });
                t.tree.value[node] = (-g / (h + p.lambda)) as f32;
                t.leaves.push((node, rows));
            }
            continue;
        }
        let mut big_hist = w.hist;
        let (small, big, small_rows, big_rows) =
            if lrows.len() <= rrows.len() { (l, r, lrows, rrows) } else { (r, l, rrows, lrows) };
        let small_hist = build_hist(bins, nf, &small_rows, gh);
        for (b, s) in big_hist.iter_mut().zip(&small_hist) {
            b[0] -= s[0];
            b[1] -= s[1];
        }
        stack.push(Work { node: big, rows: big_rows, hist: big_hist, depth: w.depth + 1 });
        stack.push(Work { node: small, rows: small_rows, hist: small_hist, depth: w.depth + 1 });
    }
    t
}

/// Split rows in two, keeping their order. Branch-free (left rows fill the
/// buffer from the front, right rows from the back) since the direction is
/// unpredictable, and in parallel chunks for large nodes.
fn partition(rows: &[u32], go_left: impl Fn(u32) -> bool + Sync) -> (Vec<u32>, Vec<u32>) {
    const PAR_MIN_ROWS: usize = 65_536;
    let one = |rows: &[u32]| {
        let n = rows.len();
        let mut out = vec![0u32; n];
        let (mut li, mut ri) = (0usize, n);
        for &row in rows {
            let l = go_left(row);
            let at = if l { li } else { ri - 1 };
            out[at] = row;
            li += l as usize;
            ri -= !l as usize;
        }
        let mut right = out.split_off(li);
        right.reverse();
        (out, right)
    };
    if rows.len() < PAR_MIN_ROWS {
        return one(rows);
    }
    let chunk = rows.len().div_ceil(rayon::current_num_threads() * 2);
    let parts: Vec<(Vec<u32>, Vec<u32>)> = rows.par_chunks(chunk).map(one).collect();
    let mut left = Vec::with_capacity(rows.len());
    let mut right = Vec::with_capacity(rows.len());
    for (l, r) in parts {
        left.extend_from_slice(&l);
        right.extend_from_slice(&r);
    }
    (left, right)
}

fn new_node(t: &mut GrownTree) -> usize {
    let tr = &mut t.tree;
    tr.feature.push(0);
    tr.threshold.push(0.0);
    tr.default_left.push(false);
    tr.left.push(LEAF);
    tr.right.push(LEAF);
    tr.value.push(0.0);
    t.bin.push(0);
    tr.feature.len() - 1
}

/// Gradient and hessian sums of a node (any one feature's bins add up to it).
fn totals(h: &Hist, _nf: usize) -> (f64, f64) {
    h[..256].iter().fold((0.0, 0.0), |(g, hh), e| (g + e[0], hh + e[1]))
}

fn build_hist(bins: &[u8], nf: usize, rows: &[u32], gh: &[[f32; 2]]) -> Hist {
    const PAR_MIN_ROWS: usize = 16_384;
    let fill = |rows: &[u32]| {
        let mut h: Hist = vec![[0.0; 2]; nf * 256];
        for &r in rows {
            let [g, hh] = gh[r as usize];
            let (g, hh) = (g as f64, hh as f64);
            let rb = &bins[r as usize * nf..r as usize * nf + nf];
            for (f, &b) in rb.iter().enumerate() {
                let e = &mut h[f * 256 + b as usize];
                e[0] += g;
                e[1] += hh;
            }
        }
        h
    };
    if rows.len() < PAR_MIN_ROWS {
        return fill(rows);
    }
    let chunk = rows.len().div_ceil(rayon::current_num_threads()).max(PAR_MIN_ROWS / 2);
    rows.par_chunks(chunk)
        .map(fill)
        .reduce_with(|mut a, b| {
            for (x, y) in a.iter_mut().zip(&b) {
                x[0] += y[0];
                x[1] += y[1];
            }
            a
        })
        .unwrap_or_else(|| vec![[0.0; 2]; nf * 256])
}

fn best_split(h: &Hist, nf: usize, cuts: &Cuts, g: f64, hh: f64, p: &GrowParams) -> Option<Split> {
    let score = |g: f64, h: f64| g * g / (h + p.lambda);
    let parent = score(g, hh);
    let mut best: Option<Split> = None;
    for f in 0..nf {
        let nb = cuts.cuts[f].len() + 1;
        if nb < 2 {
            continue;
        }
        let fh = &h[f * 256..f * 256 + 256];
        let [mg, mh] = fh[MISSING_BIN as usize];
        let (mut gl, mut hl) = (0.0, 0.0);
        for (b, e) in fh[..nb - 1].iter().enumerate() {
            gl += e[0];
            hl += e[1];
            // missing right, then missing left (only if there are missing values)
            for dl in [false, true] {
                if dl && mh <= 0.0 {
                    continue;
                }
                let (lg, lh) = if dl { (gl + mg, hl + mh) } else { (gl, hl) };
                let (rg, rh) = (g - lg, hh - lh);
                if lh < p.min_child_weight || rh < p.min_child_weight {
                    continue;
                }
                let gain = score(lg, lh) + score(rg, rh) - parent;
                if gain > p.min_split_gain && best.as_ref().is_none_or(|s| gain > s.gain) {
                    // with no missing values seen, send future ones to the bigger side
                    let default_left = if mh > 0.0 { dl } else { lh >= rh };
                    best = Some(Split { gain, feature: f, bin: b as u8, default_left });
                }
            }
        }
    }
    best
}
