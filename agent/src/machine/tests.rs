//! Every path of the machine, tick by tick, with made-up observations.

use super::*;

const OLD: &str = "sha256:old";
const NEW: &str = "sha256:new";

fn rules() -> Rules {
    Rules { health_timeout_ms: 30_000, soak_ms: 60_000, min_judged: 5, max_error_ratio: 1.5 }
}

fn sample(predictions: u64, judged: u64, error: f64, persistence: f64) -> Sample {
    Sample { predictions, judged, absolute_error_w: error, persistence_error_w: persistence }
}

fn running(digest: &str, version: &str) -> Container {
    Container::Running { digest: digest.into(), model_version: Some(version.into()) }
}

fn healthy(version: &str, s: Sample) -> Probe {
    Probe::Healthy { model_version: version.into(), sample: s }
}

fn obs(now_ms: i64, tag: Option<&str>, container: Container, probe: Probe) -> Observation {
    Observation { now_ms, tag_digest: tag.map(Into::into), container, probe }
}

fn kinds(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            Action::Run { digest } => format!("run {digest}"),
            Action::StopAll => "stop".into(),
            Action::Record(e) => e.kind.name().into(),
        })
        .collect()
}

/// A machine whose known-good OLD predictor has run for two minutes with an
/// error of 0.1 of persistence's, sampled every 10 s.
fn steady_on_old() -> (Machine, i64) {
    let state = AgentState { known_good: Some(OLD.into()), ..AgentState::default() };
    let mut m = Machine::resume(state, rules(), 0);
    let mut now = 0;
    for i in 0..=12u64 {
        now = i as i64 * 10_000;
        let s = sample(i * 10, i * 10, i as f64 * 100.0, i as f64 * 1000.0);
        let actions = m.decide(&obs(now, Some(OLD), running(OLD, "v1"), healthy("v1", s)));
        assert!(actions.is_empty(), "steady: {actions:?}");
    }
    (m, now)
}

/// Switches `m` to NEW at `now`, returning the trial's start.
fn switch_to_new(m: &mut Machine, now: i64) -> i64 {
    let actions = m.decide(&obs(now, Some(NEW), running(OLD, "v1"), healthy("v1", sample(120, 120, 1200.0, 12000.0))));
    assert_eq!(kinds(&actions), ["switch", "run sha256:new"]);
    now
}

/// Ticks `m` every 10 s from `from` to `to` with NEW running and healthy,
/// its counters growing with `relative` error; returns the last tick's actions.
fn soak(m: &mut Machine, from: i64, to: i64, relative: f64) -> Vec<Action> {
    let mut last = vec![];
    let mut t = from;
    while t <= to {
        let n = ((t - from) / 10_000) as u64;
        let s = sample(n, n, n as f64 * 100.0 * relative, n as f64 * 100.0);
        last = m.decide(&obs(t, Some(NEW), running(NEW, "v2"), healthy("v2", s)));
        if !last.is_empty() {
            return last;
        }
        t += 10_000;
    }
    last
}

#[test]
fn a_new_digest_is_switched_to_with_the_old_models_error_as_baseline() {
    let (mut m, now) = steady_on_old();
    switch_to_new(&mut m, now + 10_000);
    let trial = m.state.trial.as_ref().unwrap();
    assert_eq!(trial.previous.as_deref(), Some(OLD));
    let baseline = trial.baseline.unwrap();
    assert!((baseline.relative_error - 0.1).abs() < 1e-12, "{baseline:?}");
    assert_eq!(baseline.span_ms, 60_000, "the last soak window, not the whole history");
    assert_eq!(baseline.judged, 60);
}

#[test]
fn a_healthy_predictor_that_predicts_as_well_is_committed_after_its_soak() {
    let (mut m, now) = steady_on_old();
    let start = switch_to_new(&mut m, now + 10_000);
    let actions = soak(&mut m, start + 5_000, start + 200_000, 0.12);
    assert_eq!(kinds(&actions), ["commit"]);
    assert_eq!(m.state.known_good.as_deref(), Some(NEW));
    assert_eq!(m.state.previous.as_deref(), Some(OLD));
    assert!(m.state.trial.is_none());
    // Steady on the new one afterwards: nothing to do.
    let s = sample(100, 100, 1.0, 10.0);
    assert!(m.decide(&obs(start + 300_000, Some(NEW), running(NEW, "v2"), healthy("v2", s))).is_empty());
}

#[test]
fn the_soak_window_runs_from_the_first_healthy_probe_not_from_the_switch() {
    let (mut m, now) = steady_on_old();
    let start = switch_to_new(&mut m, now + 10_000);
    // Unhealthy for 20 s (within the 30 s timeout): no verdict yet.
    for t in [start + 10_000, start + 20_000] {
        let a = m.decide(&obs(t, Some(NEW), running(NEW, "v2"), Probe::Unhealthy("connection refused".into())));
        assert!(a.is_empty());
    }
    let actions = soak(&mut m, start + 30_000, start + 300_000, 0.1);
    assert_eq!(kinds(&actions), ["commit"]);
    let Action::Record(e) = &actions[0] else { panic!() };
    assert!(e.reason.contains("error 0.100 of persistence"), "{}", e.reason);
}

#[test]
fn a_predictor_that_never_becomes_healthy_is_rolled_back_and_refused() {
    let (mut m, now) = steady_on_old();
    let start = switch_to_new(&mut m, now + 10_000);
    let down = |t| obs(t, Some(NEW), running(NEW, "v2"), Probe::Unhealthy("503: no model loaded".into()));
    assert!(m.decide(&down(start + 30_000)).is_empty());
    let actions = m.decide(&down(start + 30_001));
    assert_eq!(kinds(&actions), ["rollback", "run sha256:old"]);
    let Action::Record(e) = &actions[0] else { panic!() };
    assert!(e.reason.contains("unhealthy: 503: no model loaded") && e.reason.contains("back to sha256:old"));
    assert!(m.state.is_refused(NEW));
    assert_eq!(m.state.known_good.as_deref(), Some(OLD));
    // The tag still points to it: never tried again; the old one is kept.
    let s = sample(1, 1, 1.0, 10.0);
    assert!(m.decide(&obs(start + 40_000, Some(NEW), running(OLD, "v1"), healthy("v1", s))).is_empty());
    // A newer digest is tried.
    let a = m.decide(&obs(start + 50_000, Some("sha256:newer"), running(OLD, "v1"), healthy("v1", s)));
    assert_eq!(kinds(&a), ["switch", "run sha256:newer"]);
}

#[test]
fn a_crashed_predictor_is_rolled_back_at_once() {
    let (mut m, now) = steady_on_old();
    let start = switch_to_new(&mut m, now + 10_000);
    let exited = Container::Exited { digest: NEW.into(), exit_code: 1 };
    let actions = m.decide(&obs(start + 1_000, Some(NEW), exited, Probe::Unhealthy("refused".into())));
    assert_eq!(kinds(&actions), ["rollback", "run sha256:old"]);
    let Action::Record(e) = &actions[0] else { panic!() };
    assert!(e.reason.starts_with("the predictor exited with code 1"), "{}", e.reason);
}

#[test]
fn a_predictor_serving_another_model_than_its_label_is_rolled_back_after_the_timeout() {
    let (mut m, now) = steady_on_old();
    let start = switch_to_new(&mut m, now + 10_000);
    let wrong = |t| obs(t, Some(NEW), running(NEW, "v2"), healthy("v1", sample(0, 0, 0.0, 0.0)));
    assert!(m.decide(&wrong(start + 10_000)).is_empty());
    let actions = m.decide(&wrong(start + 31_000));
    assert_eq!(kinds(&actions), ["rollback", "run sha256:old"]);
    let Action::Record(e) = &actions[0] else { panic!() };
    assert!(e.reason.contains("serves model v1, not its image's v2"), "{}", e.reason);
}

#[test]
fn a_predictor_that_predicts_far_worse_is_rolled_back_by_the_soak() {
    let (mut m, now) = steady_on_old();
    let start = switch_to_new(&mut m, now + 10_000);
    let actions = soak(&mut m, start + 5_000, start + 200_000, 0.5);
    assert_eq!(kinds(&actions), ["rollback", "run sha256:old"]);
    let Action::Record(e) = &actions[0] else { panic!() };
    assert!(e.reason.contains("predicts worse: error 0.500") && e.reason.contains("against 0.100"), "{}", e.reason);
    assert!(m.state.is_refused(NEW));
}

#[test]
fn a_predictor_that_stops_predicting_is_rolled_back() {
    let (mut m, now) = steady_on_old();
    let start = switch_to_new(&mut m, now + 10_000);
    let mut last = vec![];
    for i in 1..=10 {
        let t = start + i * 10_000;
        last = m.decide(&obs(t, Some(NEW), running(NEW, "v2"), healthy("v2", sample(3, 3, 1.0, 10.0))));
        if !last.is_empty() {
            break;
        }
    }
    assert_eq!(kinds(&last), ["rollback", "run sha256:old"]);
    let Action::Record(e) = &last[0] else { panic!() };
    assert!(e.reason.contains("made no prediction"), "{}", e.reason);
}

#[test]
fn too_few_judged_predictions_commit_on_health_and_predictions() {
    let (mut m, now) = steady_on_old();
    let start = switch_to_new(&mut m, now + 10_000);
    let mut last = vec![];
    for i in 1..=10u64 {
        let t = start + i as i64 * 10_000;
        // Predicting, but judging only 2 (a worse error than the baseline's).
        let s = sample(i, i.min(2), i.min(2) as f64 * 90.0, i.min(2) as f64 * 100.0);
        last = m.decide(&obs(t, Some(NEW), running(NEW, "v2"), healthy("v2", s)));
        if !last.is_empty() {
            break;
        }
    }
    assert_eq!(kinds(&last), ["commit"]);
}

#[test]
fn a_first_image_with_nothing_to_go_back_to_stops_when_it_fails() {
    let mut m = Machine::resume(AgentState::default(), rules(), 0);
    let a = m.decide(&obs(0, Some(NEW), Container::Absent, Probe::Unhealthy("refused".into())));
    assert_eq!(kinds(&a), ["switch", "run sha256:new"]);
    let exited = Container::Exited { digest: NEW.into(), exit_code: 2 };
    let a = m.decide(&obs(1_000, Some(NEW), exited, Probe::Unhealthy("refused".into())));
    assert_eq!(kinds(&a), ["rollback", "stop"]);
    assert!(m.state.known_good.is_none() && m.state.is_refused(NEW));
}

#[test]
fn a_first_image_without_a_baseline_commits_on_health_and_predictions() {
    let mut m = Machine::resume(AgentState::default(), rules(), 0);
    m.decide(&obs(0, Some(NEW), Container::Absent, Probe::Unhealthy("refused".into())));
    let actions = soak(&mut m, 1_000, 200_000, 0.9);
    assert_eq!(kinds(&actions), ["commit"]);
    assert_eq!(m.state.known_good.as_deref(), Some(NEW));
}

#[test]
fn a_restart_mid_switch_runs_the_trial_digest_again_and_soaks_it_afresh() {
    let (mut m, now) = steady_on_old();
    let start = switch_to_new(&mut m, now + 10_000);
    soak(&mut m, start + 5_000, start + 35_000, 0.1);
    // Killed here; the engine shows the old one (the switch never finished).
    let saved = m.state.clone();
    let mut m = Machine::resume(saved, rules(), start + 100_000);
    let a = m.decide(&obs(start + 100_000, Some(NEW), running(OLD, "v1"), Probe::Unhealthy("refused".into())));
    assert_eq!(kinds(&a), ["run sha256:new"]);
    let a = m.decide(&obs(start + 101_000, Some(NEW), Container::Absent, Probe::Unhealthy("refused".into())));
    assert_eq!(kinds(&a), ["run sha256:new"]);
    // The soak starts over at the first healthy probe after the restart.
    let actions = soak(&mut m, start + 110_000, start + 400_000, 0.1);
    assert_eq!(kinds(&actions), ["commit"]);
    let Action::Record(e) = &actions[0] else { panic!() };
    assert!(e.reason.contains("0.100 before the switch"), "the baseline survived the restart: {}", e.reason);
}

#[test]
fn a_trial_container_created_but_never_started_is_started_not_refused() {
    // The agent was killed between creating the new container and starting
    // it: the engine reports it stopped with exit code 0. It never ran, so
    // it is no evidence against the image (a clean-clone CI run refused a
    // good model this way).
    let (mut m, now) = steady_on_old();
    let start = switch_to_new(&mut m, now + 10_000);
    let mut m = Machine::resume(m.state.clone(), rules(), start + 1_000);
    let created = Container::Created { digest: NEW.into() };
    let a = m.decide(&obs(start + 1_100, Some(NEW), created, Probe::Unhealthy("refused".into())));
    assert_eq!(kinds(&a), ["run sha256:new"]);
    assert!(!m.state.is_refused(NEW) && m.state.trial.is_some());
}

#[test]
fn the_known_good_predictor_is_restarted_when_it_exits_or_vanishes() {
    let (mut m, now) = steady_on_old();
    let exited = Container::Exited { digest: OLD.into(), exit_code: 137 };
    let a = m.decide(&obs(now + 10_000, Some(OLD), exited, Probe::Unhealthy("refused".into())));
    assert_eq!(kinds(&a), ["restart", "run sha256:old"]);
    let a = m.decide(&obs(now + 20_000, None, Container::Absent, Probe::Unhealthy("refused".into())));
    assert_eq!(kinds(&a), ["restart", "run sha256:old"], "a registry that is down changes nothing");
    let created = Container::Created { digest: OLD.into() };
    let a = m.decide(&obs(now + 30_000, Some(OLD), created, Probe::Unhealthy("refused".into())));
    assert_eq!(kinds(&a), ["restart", "run sha256:old"]);
}

#[test]
fn a_failed_pull_abandons_the_trial_without_refusing_the_digest() {
    let (mut m, now) = steady_on_old();
    switch_to_new(&mut m, now + 10_000);
    let a = m.run_failed(NEW, "pull: registry unreachable");
    assert_eq!(kinds(&a), ["failed", "run sha256:old"]);
    assert!(m.state.trial.is_none() && !m.state.is_refused(NEW));
    let s = sample(130, 130, 1300.0, 13000.0);
    let a = m.decide(&obs(now + 40_000, Some(NEW), running(OLD, "v1"), healthy("v1", s)));
    assert_eq!(kinds(&a), ["switch", "run sha256:new"], "tried again at the next poll");
}

#[test]
fn a_predictor_running_without_state_is_adopted() {
    let mut m = Machine::resume(AgentState::default(), rules(), 0);
    let a = m.decide(&obs(0, None, running(OLD, "v1"), healthy("v1", sample(1, 1, 1.0, 10.0))));
    assert_eq!(kinds(&a), ["commit"]);
    assert_eq!(m.state.known_good.as_deref(), Some(OLD));
}

#[test]
fn refused_digests_are_bounded_oldest_first() {
    let mut m = Machine::resume(AgentState::default(), rules(), 0);
    for i in 0..(MAX_REFUSED + 3) {
        m.refuse(&format!("sha256:{i}"), "bad", 0);
    }
    assert_eq!(m.state.refused.len(), MAX_REFUSED);
    assert!(!m.state.is_refused("sha256:0") && m.state.is_refused(&format!("sha256:{}", MAX_REFUSED + 2)));
}
