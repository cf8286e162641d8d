//! Command-line pieces the `gridcast` binary registers: `train`, `backtest`,
//! `predict-batch` (and `features`, which writes the feature table the
//! benchmarks feed to XGBoost; `import-xgboost`, which turns a user's XGBoost
//! model into a model file the predictor serves). Each is an `Args` struct
//! and a `run_*` function; errors carry the file and line they are about.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use gridcast_core::features::{FeatureSpec, FeatureTable, Interval, TargetKind};
use gridcast_core::model::{Model, xgboost};
use indicatif::{ProgressBar, ProgressStyle};

use crate::data;
use crate::gbdt::{Loss, TrainParams};
use crate::pipeline;

/// What the trees learn (see `gridcast_core::features::TargetKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TargetArg {
    /// Total power of the target interval.
    Level,
    /// Target interval's total minus the current total (beats persistence on spiky data).
    Change,
}

/// Feature and training knobs shared by `train` and `backtest`.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// Interval length in seconds the CSV is averaged to [default: the data's
    /// own spacing, e.g. 600 for a 10-minute export]. Must be a whole
    /// multiple of that spacing (10 s rows average into 60 s intervals).
    #[arg(long)]
    pub interval_secs: Option<u32>,
    /// Intervals ahead to predict (1 = next interval).
    #[arg(long, default_value_t = 1)]
    pub horizon: u32,
    #[arg(long, value_enum, default_value_t = TargetArg::Change)]
    pub target: TargetArg,
    #[arg(long, value_enum, default_value_t = Loss::Absolute)]
    pub loss: Loss,
    /// Most trees (early stopping may keep fewer).
    #[arg(long, default_value_t = 600)]
    pub trees: usize,
    #[arg(long, default_value_t = 6)]
    pub depth: usize,
    #[arg(long, default_value_t = 0.05)]
    pub learning_rate: f64,
    /// Least rows in a leaf (hessian sum); larger is smoother.
    #[arg(long, default_value_t = 20.0)]
    pub min_child_weight: f64,
    /// Fraction of rows per tree.
    #[arg(long, default_value_t = 1.0)]
    pub subsample: f64,
    /// Trees without validation improvement before stopping (0 = off).
    #[arg(long, default_value_t = 50)]
    pub early_stopping: usize,
    /// Tail of the training rows used for early stopping.
    #[arg(long, default_value_t = 0.1)]
    pub validation_fraction: f64,
    /// Keep the trees trained without the validation tail (default: retrain
    /// on all rows with the number of trees early stopping chose).
    #[arg(long)]
    pub no_refit: bool,
    /// Training threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

impl ModelArgs {
    /// The feature spec for a series averaged to `interval_secs`.
    pub fn spec(&self, interval_secs: u32) -> FeatureSpec {
        FeatureSpec {
            interval_secs,
            horizon: self.horizon,
            target: match self.target {
                TargetArg::Level => TargetKind::Level,
                TargetArg::Change => TargetKind::Change,
            },
            ..FeatureSpec::default()
        }
    }

    pub fn params(&self) -> TrainParams {
        TrainParams {
            n_trees: self.trees,
            max_depth: self.depth,
            learning_rate: self.learning_rate,
            min_child_weight: self.min_child_weight,
            subsample: self.subsample,
            loss: self.loss,
            early_stopping_rounds: self.early_stopping,
            validation_fraction: self.validation_fraction,
            refit: !self.no_refit,
            threads: self.threads,
            ..TrainParams::default()
        }
    }
}

/// `gridcast train --csv FILE --out MODEL`
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// Meter CSV: timestamp (RFC 3339), p_l1[, p_l2, p_l3] in W.
    #[arg(long)]
    pub csv: PathBuf,
    /// Where to write the model file.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// `gridcast backtest --csv FILE [--train-fraction 0.8] [--json] [--plot out.png]`
#[derive(Debug, Clone, Args)]
pub struct BacktestArgs {
    #[arg(long)]
    pub csv: PathBuf,
    /// Share of the series (from the start) to train on; the rest is predicted.
    #[arg(long, default_value_t = 0.8)]
    pub train_fraction: f64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// PNG of predicted (red) vs actual (blue) over the last two test days.
    #[arg(long, default_value = "backtest.png")]
    pub plot: PathBuf,
    /// Do not write the plot.
    #[arg(long)]
    pub no_plot: bool,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// `gridcast predict-batch --model MODEL --csv FEATURES`
#[derive(Debug, Clone, Args)]
pub struct PredictBatchArgs {
    /// A gridcast model file, or an XGBoost JSON model (`save_model("m.json")`).
    #[arg(long)]
    pub model: PathBuf,
    /// CSV with a column per model feature name (others ignored); one prediction per row.
    #[arg(long)]
    pub csv: PathBuf,
}

/// `import-xgboost --model M.json --interval-secs 10 --out M.gcm`: an XGBoost
/// JSON model (`booster.save_model("m.json")`) as a gridcast model file the
/// predictor serves, its inputs declared as columns of ours.
#[derive(Debug, Clone, Args)]
#[command(after_help = concat!(
    "Feature names (the model's inputs, each one column the predictor computes from the meter's \
     per-interval phase powers; k counts intervals of --interval-secs back):\n  ",
    "p_l{p}          phase p (1..3), mean power of the interval just closed, W\n  ",
    "p_l{p}-{k}      the same, k >= 1 intervals back (also p_l{p}_lag{k})\n  ",
    "total, total-{k} (also total_lag{k})  sum of the phases\n  ",
    "total_diff1, p_l{p}_diff1, total_mean{w}, total_std{w}, minute_of_day, tod_sin, tod_cos, day_of_week\n\n",
    "The prototype's model: --interval-secs 10 --target level, inputs p_l1,p_l2,p_l3,p_l1-1,p_l2-1,p_l3-1,..."
))]
pub struct ImportXgboostArgs {
    /// The XGBoost JSON model.
    #[arg(long)]
    pub model: PathBuf,
    /// Where to write the gridcast model file.
    #[arg(long)]
    pub out: PathBuf,
    /// Interval the model was trained on, in seconds (its lags count these);
    /// must equal the predictor's `[predict] interval_secs`.
    #[arg(long)]
    pub interval_secs: u32,
    /// Intervals ahead the model predicts (1 = the next interval).
    #[arg(long, default_value_t = 1)]
    pub horizon: u32,
    /// What the model's output is: the target interval's total power
    /// (`level`), or its change from the current total (`change`, needs a
    /// `total` input).
    #[arg(long, value_enum, default_value_t = TargetArg::Level)]
    pub target: TargetArg,
    /// The model's inputs in its order, comma-separated: `NAME` (a feature
    /// name below) or `NAME=COLUMN` (input NAME is our column COLUMN, e.g.
    /// `f3=p_l1-1`). NAME must be the file's name for that input when the
    /// file names its inputs. Default: the file's own names.
    #[arg(long, value_delimiter = ',')]
    pub features: Option<Vec<String>>,
}

/// `features --csv FILE --out FEATURES.csv`: the feature table with targets.
#[derive(Debug, Clone, Args)]
pub struct FeaturesArgs {
    #[arg(long)]
    pub csv: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
}

fn progress_bar(n: usize, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(n as u64);
    pb.set_style(
        ProgressStyle::with_template("training {bar:40} {pos}/{len} trees {elapsed} {msg}").expect("valid template"),
    );
    pb
}

fn on_tree(pb: &ProgressBar) -> impl FnMut(usize, Option<f64>) + Send + '_ {
    move |done, metric| {
        pb.set_position(done as u64);
        if let Some(m) = metric {
            pb.set_message(format!("validation {m:.2} W"));
        }
    }
}

/// Load the CSV at the interval asked for, or at the data's own spacing
/// (said on stderr).
fn load_series(csv: &std::path::Path, model: &ModelArgs) -> anyhow::Result<(FeatureSpec, Vec<Interval>)> {
    let (interval, series) = data::load_series(csv, model.interval_secs)?;
    if model.interval_secs.is_none() {
        eprintln!("interval: {interval} s, the spacing of the rows in {}", csv.display());
    }
    Ok((model.spec(interval), series))
}

pub fn run_train(args: TrainArgs) -> anyhow::Result<()> {
    let params = args.model.params();
    let (spec, series) = load_series(&args.csv, &args.model)?;
    let table = FeatureTable::build(&spec, &series)?;
    let rows = table.labelled_rows();
    let pb = progress_bar(params.n_trees, false);
    let (model, trained) = pipeline::fit(&spec, &table, &rows, &params, &mut on_tree(&pb))?;
    pb.finish_and_clear();
    std::fs::write(&args.out, model.to_bytes()).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "wrote {} ({} trees, {} rows, {:.1} s, validation {:?}, sha256 {})",
        args.out.display(),
        model.forest().n_trees(),
        trained.train_rows,
        trained.seconds,
        trained.validation_metric,
        model.payload_sha256()
    );
    Ok(())
}

pub fn run_backtest(args: BacktestArgs) -> anyhow::Result<()> {
    let params = args.model.params();
    let (spec, series) = load_series(&args.csv, &args.model)?;
    let pb = progress_bar(params.n_trees, args.json);
    let (report, _model, points) = pipeline::backtest(&spec, &series, &params, args.train_fraction, &mut on_tree(&pb))?;
    pb.finish_and_clear();
    if !args.no_plot {
        crate::plot::write_png(&args.plot, &points)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{report}");
        if !args.no_plot {
            println!("  plot: {}", args.plot.display());
        }
    }
    Ok(())
}

/// Load a native model, or an XGBoost JSON model (output taken as the level).
pub fn load_model(path: &std::path::Path) -> anyhow::Result<Model> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let res = if bytes.first() == Some(&b'{') && bytes.windows(9).take(4096).any(|w| w == b"\"learner\"") {
        xgboost::import_json(&bytes, TargetKind::Level)
    } else {
        Model::from_bytes(&bytes)
    };
    res.with_context(|| format!("loading model {}", path.display()))
}

pub fn run_import_xgboost(args: ImportXgboostArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.model).with_context(|| format!("reading {}", args.model.display()))?;
    let serving = xgboost::Serving {
        target: match args.target {
            TargetArg::Level => TargetKind::Level,
            TargetArg::Change => TargetKind::Change,
        },
        interval_secs: args.interval_secs,
        horizon: args.horizon,
        features: args.features.clone(),
    };
    let model =
        xgboost::import_json_mapped(&bytes, &serving).with_context(|| format!("importing {}", args.model.display()))?;
    std::fs::write(&args.out, model.to_bytes()).with_context(|| format!("writing {}", args.out.display()))?;
    let map = model.feature_map().expect("an imported model has its feature map");
    let inputs: Vec<String> = model
        .meta
        .feature_names
        .iter()
        .zip(&map.columns)
        .map(|(n, c)| if n == c { n.clone() } else { format!("{n}={c}") })
        .collect();
    eprintln!(
        "wrote {} ({} trees, {} s intervals, horizon {}, {} target, sha256 {}); inputs: {}",
        args.out.display(),
        model.forest().n_trees(),
        map.interval_secs,
        map.horizon,
        if model.meta.target == TargetKind::Level { "level" } else { "change" },
        model.payload_sha256(),
        inputs.join(",")
    );
    Ok(())
}

pub fn run_predict_batch(args: PredictBatchArgs) -> anyhow::Result<()> {
    let model = load_model(&args.model)?;
    let file = std::fs::File::open(&args.csv).with_context(|| format!("opening {}", args.csv.display()))?;
    let x = data::read_feature_rows(file, &model.meta.feature_names)
        .with_context(|| format!("reading {}", args.csv.display()))?;
    let w = model.meta.feature_names.len();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for row in x.chunks_exact(w) {
        writeln!(out, "{}", model.predict_level(row))?;
    }
    out.flush()?;
    Ok(())
}

pub fn run_features(args: FeaturesArgs) -> anyhow::Result<()> {
    let (spec, series) = load_series(&args.csv, &args.model)?;
    let t = FeatureTable::build(&spec, &series)?;
    let f = std::fs::File::create(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mut w = std::io::BufWriter::new(f);
    let fmt = |v: f32| {
        if v.is_nan() { String::new() } else { v.to_string() }
    };
    writeln!(w, "timestamp,{},current_total,next_total,target", t.names.join(","))?;
    for i in 0..t.rows() {
        let row: Vec<String> = t.row(i).iter().map(|&v| fmt(v)).collect();
        writeln!(
            w,
            "{},{},{},{},{}",
            t.ts[i],
            row.join(","),
            fmt(t.current_total[i]),
            fmt(t.next_total[i]),
            fmt(t.target[i])
        )?;
    }
    w.flush()?;
    Ok(())
}
