//! The portable form of a regression tree: parallel arrays like XGBoost's
//! JSON, easy to write from a trainer or an importer and to serialize.
//! [`super::Forest`] compiles these into the layout used for prediction.

use serde::{Deserialize, Serialize};

/// Marks a leaf in [`Tree::left`] (a root is never anyone's child).
pub const LEAF: u32 = 0;

/// One regression tree. Node 0 is the root. For a split node `i`:
/// `x[feature[i]] < threshold[i]` goes to `left[i]`, otherwise `right[i]`;
/// a missing (NaN) value goes left when `default_left[i]`. For a leaf,
/// `left[i] == LEAF` and `value[i]` is its output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tree {
    pub feature: Vec<u32>,
    pub threshold: Vec<f32>,
    pub default_left: Vec<bool>,
    pub left: Vec<u32>,
    pub right: Vec<u32>,
    pub value: Vec<f32>,
}

impl Tree {
    /// A tree that is a single leaf.
    pub fn leaf(value: f32) -> Self {
        Tree {
            feature: vec![0],
            threshold: vec![0.0],
            default_left: vec![false],
            left: vec![LEAF],
            right: vec![LEAF],
            value: vec![value],
        }
    }

    pub fn len(&self) -> usize {
        self.feature.len()
    }

    pub fn is_empty(&self) -> bool {
        self.feature.is_empty()
    }

    pub fn is_leaf(&self, i: usize) -> bool {
        self.left[i] == LEAF
    }

    /// Check the arrays describe a proper tree over `n_features` inputs:
    /// equal lengths, children in range and each node reached once.
    pub fn validate(&self, n_features: usize) -> Result<(), String> {
        let n = self.len();
        if n == 0 {
            return Err("tree has no nodes".into());
        }
        for (name, len) in [
            ("threshold", self.threshold.len()),
            ("default_left", self.default_left.len()),
            ("left", self.left.len()),
            ("right", self.right.len()),
            ("value", self.value.len()),
        ] {
            if len != n {
                return Err(format!("tree arrays differ in length: feature has {n}, {name} has {len}"));
            }
        }
        let mut seen = vec![false; n];
        let mut stack = vec![0usize];
        seen[0] = true;
        while let Some(i) = stack.pop() {
            if self.is_leaf(i) {
                if !self.value[i].is_finite() {
                    return Err(format!("leaf {i} has a non-finite value"));
                }
                continue;
            }
            if self.feature[i] as usize >= n_features {
                return Err(format!("node {i} splits on feature {} but the model has {n_features}", self.feature[i]));
            }
            // An infinite one would be written to a model file as null,
            // which no load reads back (an import could make one: XGBoost's
            // JSON has f64 split conditions, trees hold f32).
            if !self.threshold[i].is_finite() {
                return Err(format!("node {i} has a non-finite threshold ({})", self.threshold[i]));
            }
            for c in [self.left[i] as usize, self.right[i] as usize] {
                if c == 0 || c >= n || seen[c] {
                    return Err(format!("node {i} has an invalid or shared child {c}"));
                }
                seen[c] = true;
                stack.push(c);
            }
        }
        Ok(())
    }

    /// Depth of the deepest leaf (a single leaf has depth 0).
    pub fn depth(&self) -> usize {
        let mut best = 0;
        let mut stack = vec![(0usize, 0usize)];
        while let Some((i, d)) = stack.pop() {
            if self.is_leaf(i) {
                best = best.max(d);
            } else {
                stack.push((self.left[i] as usize, d + 1));
                stack.push((self.right[i] as usize, d + 1));
            }
        }
        best
    }

    /// Output for one row, walking the node arrays (reference semantics; the
    /// forest's compiled layout must agree with this).
    pub fn predict(&self, row: &[f32]) -> f32 {
        let mut i = 0usize;
        while !self.is_leaf(i) {
            let x = row[self.feature[i] as usize];
            let go_left = if x.is_nan() { self.default_left[i] } else { x < self.threshold[i] };
            i = if go_left { self.left[i] } else { self.right[i] } as usize;
        }
        self.value[i]
    }
}
