//! Export of a forest as an ONNX `ai.onnx.ml.TreeEnsembleRegressor`, for
//! users of ONNX Runtime (feature `onnx`; written with tract-onnx's public
//! protobuf types, so no protobuf code of our own).
//!
//! The graph has one input `input` (float, `[N, n_features]`, columns in
//! `meta.feature_names` order) and one output `variable` (`[N, 1]`): the raw
//! output, i.e. the predicted change for change-target models (add the
//! current total to get the level). Splits are `BRANCH_LT` (x < t goes to
//! the true branch, our left) with `nodes_missing_value_tracks_true` set from
//! the default directions, which is XGBoost's and our semantics.
//! Checked against onnxruntime by `bench/model/check_onnx.py`.

use prost::Message;
use tract_onnx::pb::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto, TensorShapeProto,
    TypeProto, ValueInfoProto, attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
};

use super::Model;

fn ints(name: &str, v: Vec<i64>) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Ints as i32, ints: v, ..Default::default() }
}

fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i, ..Default::default() }
}

fn floats(name: &str, v: Vec<f32>) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Floats as i32, floats: v, ..Default::default() }
}

fn string(name: &str, v: &str) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::String as i32, s: v.into(), ..Default::default() }
}

fn tensor_info(name: &str, dims: [Option<i64>; 2]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Some(n) => tensor_shape_proto::dimension::Value::DimValue(*n),
                None => tensor_shape_proto::dimension::Value::DimParam("N".into()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Serialize `model` as an ONNX model (protobuf bytes).
pub fn to_onnx(model: &Model) -> Vec<u8> {
    let mut a = Attrs::default();
    for (t, tree) in model.trees().iter().enumerate() {
        for i in 0..tree.len() {
            a.tree.push(t as i64);
            a.node.push(i as i64);
            if tree.is_leaf(i) {
                a.feature.push(0);
                a.mode.push(b"LEAF".to_vec());
                a.value.push(0.0);
                a.yes.push(0);
                a.no.push(0);
                a.missing_true.push(0);
                a.target_tree.push(t as i64);
                a.target_node.push(i as i64);
                a.weight.push(tree.value[i]);
            } else {
                a.feature.push(tree.feature[i] as i64);
                a.mode.push(b"BRANCH_LT".to_vec());
                a.value.push(tree.threshold[i]);
                a.yes.push(tree.left[i] as i64);
                a.no.push(tree.right[i] as i64);
                a.missing_true.push(tree.default_left[i] as i64);
            }
        }
    }
    let n_leaves = a.weight.len();
    let node = NodeProto {
        input: vec!["input".into()],
        output: vec!["variable".into()],
        name: "trees".into(),
        op_type: "TreeEnsembleRegressor".into(),
        domain: "ai.onnx.ml".into(),
        attribute: vec![
            int("n_targets", 1),
            ints("nodes_treeids", a.tree),
            ints("nodes_nodeids", a.node),
            ints("nodes_featureids", a.feature),
            AttributeProto {
                name: "nodes_modes".into(),
                r#type: AttributeType::Strings as i32,
                strings: a.mode,
                ..Default::default()
            },
            floats("nodes_values", a.value),
            ints("nodes_truenodeids", a.yes),
            ints("nodes_falsenodeids", a.no),
            ints("nodes_missing_value_tracks_true", a.missing_true),
            ints("target_treeids", a.target_tree),
            ints("target_nodeids", a.target_node),
            ints("target_ids", vec![0; n_leaves]),
            floats("target_weights", a.weight),
            floats("base_values", vec![model.meta.base_score]),
            string("post_transform", "NONE"),
            string("aggregate_function", "SUM"),
        ],
        ..Default::default()
    };
    let nf = model.meta.feature_names.len() as i64;
    let graph = GraphProto {
        node: vec![node],
        name: "gridcast".into(),
        input: vec![tensor_info("input", [None, Some(nf)])],
        output: vec![tensor_info("variable", [None, Some(1)])],
        ..Default::default()
    };
    let meta = |k: &str, v: String| StringStringEntryProto { key: k.into(), value: v };
    ModelProto {
        ir_version: 8,
        opset_import: vec![
            OperatorSetIdProto { domain: String::new(), version: 17 },
            OperatorSetIdProto { domain: "ai.onnx.ml".into(), version: 3 },
        ],
        producer_name: "gridcast".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        metadata_props: vec![
            meta("feature_names", model.meta.feature_names.join(",")),
            meta("target", format!("{:?}", model.meta.target).to_lowercase()),
            meta("source", model.meta.source.clone()),
        ],
        ..Default::default()
    }
    .encode_to_vec()
}

#[derive(Default)]
struct Attrs {
    tree: Vec<i64>,
    node: Vec<i64>,
    feature: Vec<i64>,
    mode: Vec<Vec<u8>>,
    value: Vec<f32>,
    yes: Vec<i64>,
    no: Vec<i64>,
    missing_true: Vec<i64>,
    target_tree: Vec<i64>,
    target_node: Vec<i64>,
    weight: Vec<f32>,
}
