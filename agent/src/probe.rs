//! The predictor's `/health` and `/metrics`, read the way the machine wants
//! them: healthy with a model version and its counters, or unhealthy and why.

use std::time::Duration;

use gridcast_ship::registry::error_chain;

use crate::machine::{Probe, Sample};

pub struct Prober {
    client: reqwest::Client,
    health_url: String,
    metrics_url: String,
}

impl Prober {
    pub fn new(health_url: &str, metrics_url: &str) -> Prober {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("an HTTP client with a timeout builds");
        Prober { client, health_url: health_url.into(), metrics_url: metrics_url.into() }
    }

    pub async fn probe(&self) -> Probe {
        match self.read().await {
            Ok(probe) => probe,
            Err(why) => Probe::Unhealthy(why),
        }
    }

    async fn read(&self) -> Result<Probe, String> {
        let health = self.get(&self.health_url).await?;
        let body: serde_json::Value = serde_json::from_str(&health).map_err(|e| format!("/health is not JSON: {e}"))?;
        let model_version = body.get("model_version").and_then(|v| v.as_str()).unwrap_or_default().to_owned();
        let metrics = self.get(&self.metrics_url).await?;
        Ok(Probe::Healthy { model_version, sample: parse_sample(&metrics)? })
    }

    /// The body of a 200 answer, or why there was none.
    async fn get(&self, url: &str) -> Result<String, String> {
        let response = self.client.get(url).send().await.map_err(|e| format!("{url}: {}", error_chain(&e)))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| format!("{url}: reading the body: {e}"))?;
        if !status.is_success() {
            return Err(format!("{url}: {status}: {}", body.trim()));
        }
        Ok(body)
    }
}

/// The soak's counters from a Prometheus text exposition.
pub fn parse_sample(text: &str) -> Result<Sample, String> {
    let value = |name: &str| -> Result<f64, String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .ok_or_else(|| format!("/metrics has no {name}: is this a gridcast predictor?"))?
            .trim()
            .parse::<f64>()
            .map_err(|e| format!("/metrics: {name} is not a number: {e}"))
    };
    Ok(Sample {
        predictions: value("gridcast_predictions_total")? as u64,
        judged: value("gridcast_judged_total")? as u64,
        absolute_error_w: value("gridcast_absolute_error_watts_sum")?,
        persistence_error_w: value("gridcast_persistence_error_watts_sum")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soak_counters_are_read_from_the_predictors_exposition() {
        let text = "# HELP gridcast_predictions_total Predictions made.\n# TYPE gridcast_predictions_total counter\n\
                    gridcast_predictions_total 42\ngridcast_judged_total 40\n\
                    gridcast_absolute_error_watts_sum 123.5\ngridcast_persistence_error_watts_sum 4000\n";
        let s = parse_sample(text).unwrap();
        assert_eq!(s, Sample { predictions: 42, judged: 40, absolute_error_w: 123.5, persistence_error_w: 4000.0 });
        let e = parse_sample("gridcast_predictions_total 1\n").unwrap_err();
        assert!(e.contains("no gridcast_judged_total"), "{e}");
    }
}
