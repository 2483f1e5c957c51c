//! Private scoring (backend `2pc`) set-up: the test model, a node serving the scoring policy with an FI
//! paired, runs through that node over loopback, and in-memory instances for the protocol benches.
//!
//! The runs through a node use only the FI client's public API ([`Client::score`], [`Client::score_run`]):
//! a real owner node on loopback answers them, with its policy, limits, log and receipts.

use crate::fi::{paired_fi, Fi};
use crate::owner::{owner_with_sample, OwnerNode};
use crate::policy::SCORING_POLICY;
use duo_engine::Answer;
use duo_node::fi::ModelFile;
use duo_node::fi::{Client, ScoreReport};
use duo_node::owner::Owner;
use duo_node::owner::RunningNode;
use duo_policies::{Backend, Reveal};
use duo_protocols::fixed::{Bounds, FixedModel};
use duo_protocols::ot::SessionId;
use duo_protocols::score;
use rand::Rng;
use std::time::Duration;

/// The catalogue attributes [`test_model`] weighs.
pub const MODEL_ATTRIBUTES: [&str; 3] = [
    "rent_on_time_ratio_12m",
    "nsf_overdraft_count_90d",
    "utility_on_time_ratio_12m",
];

/// A model file named `test` over [`MODEL_ATTRIBUTES`] (rent 2.5, overdrafts -0.75, utilities 1.25) with
/// `bias`, `threshold` and the band edges `bands`.
///
/// # Panics
///
/// If the model does not parse (band edges out of order, say).
pub fn test_model(bias: f64, threshold: f64, bands: &[f64]) -> ModelFile {
    let bands = bands
        .iter()
        .map(|b| b.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    ModelFile::parse(&format!(
        "name = \"test\"\nbias = {bias}\nthreshold = {threshold}\nbands = [{bands}]\n[weights]\n\
         rent_on_time_ratio_12m = 2.5\nnsf_overdraft_count_90d = -0.75\nutility_on_time_ratio_12m = 1.25\n"
    ))
    .unwrap_or_else(|e| panic!("the test model with bands {bands:?}: {e}"))
}

/// An owner with the sample data under [`SCORING_POLICY`], its node running on loopback, and an FI paired as
/// `principal` with a session open.
///
/// # Panics
///
/// If any step fails.
pub async fn scoring_node(principal: &str) -> (OwnerNode, RunningNode, Fi, Client) {
    let owner = owner_with_sample(SCORING_POLICY);
    let node = owner.start().await;
    let fi = paired_fi(&owner, &node, principal).await;
    let client = fi.connect().await;
    (owner, node, fi, client)
}

/// A progress callback that ignores the run's progress.
pub fn quiet() -> impl FnMut(&str) + Send {
    |_: &str| {}
}

/// The owner's values of `model`'s attributes, in the model's order, asked for as plaintext catalogue
/// releases (which the policy must approve, as [`SCORING_POLICY`] does): the reference a run's outcome is
/// checked against.
///
/// # Panics
///
/// If a release fails or is not a number.
pub async fn owner_values(client: &mut Client, model: &ModelFile) -> Vec<f64> {
    let mut out = Vec::new();
    for a in model.attributes() {
        let p = client
            .attribute(&a)
            .await
            .unwrap_or_else(|e| panic!("a pointer to attribute {a}: {e}"));
        let v = client
            .request(&p, Backend::Plaintext, "reference for the scoring test")
            .await
            .unwrap_or_else(|e| panic!("the plaintext release of {a}: {e}"));
        match v.answer {
            Some(Answer::Scalar { value }) => out.push(
                value
                    .as_f64()
                    .unwrap_or_else(|| panic!("{a}: {value:?} is not a number")),
            ),
            other => panic!("{a}: {other:?}"),
        }
    }
    out
}

/// Asks to score with `model` revealing a decision, and runs it: the policy must approve decisions (as
/// [`SCORING_POLICY`] does).
///
/// # Panics
///
/// If the request is refused or the run fails.
pub async fn decide(client: &mut Client, model: &ModelFile, reason: &str) -> ScoreReport {
    client
        .score(
            model,
            Reveal::Decision,
            reason,
            Duration::from_secs(5),
            &mut quiet(),
        )
        .await
        .unwrap_or_else(|e| panic!("a private decision ({reason}): {e}"))
}

/// Asks to score with `model` revealing `reveal`, waiting up to `wait` for the owner, expecting a refusal;
/// returns its message.
///
/// # Panics
///
/// If the run succeeds.
pub async fn score_err(
    client: &mut Client,
    model: &ModelFile,
    reveal: Reveal,
    reason: &str,
    wait: Duration,
) -> String {
    match client
        .score(model, reveal, reason, wait, &mut quiet())
        .await
    {
        Ok(r) => panic!(
            "expected a refusal ({reason}), the run gave {:?}",
            r.outcome
        ),
        Err(e) => e.to_string(),
    }
}

/// Asks to score with `model` revealing `reveal`, which no rule approves: the request waits for the owner.
/// Returns the owner's store and the request's id.
///
/// # Panics
///
/// If the request does not wait for the owner.
pub async fn ask_pending(
    client: &mut Client,
    owner: &OwnerNode,
    model: &ModelFile,
    reveal: Reveal,
) -> (Owner, u64) {
    let e = score_err(
        client,
        model,
        reveal,
        "pricing tier",
        Duration::from_millis(150),
    )
    .await;
    assert!(e.contains("waits for the owner"), "{e}");
    let o = owner.store();
    let id = *o
        .pending_ids()
        .unwrap_or_else(|e| panic!("the owner's pending requests: {e}"))
        .last()
        .unwrap_or_else(|| panic!("no pending request after: {e}"));
    (o, id)
}

/// A private-scoring instance for the protocol alone (no node): public parameters, the FI's model and the
/// owner's attributes, and the outcome a run must give.
#[derive(Debug, Clone)]
pub struct Instance {
    /// The public parameters.
    pub params: score::Params,
    /// The FI's model.
    pub model: score::FiModel,
    /// The owner's attributes.
    pub attrs: Vec<f64>,
    /// The ideal outcome: what the model gives on the attributes.
    pub want: score::Outcome,
}

impl Instance {
    /// A random instance of `n` attributes in `[0, 100]`, revealing `reveal`, on `session`: weights uniform in
    /// `[-1, 1]`, then the attributes, drawn from `rng` in that order; bias 1.5, threshold 0; for bands, band
    /// edges spread evenly around 0 (`10·√n` apart).
    pub fn random(
        n: usize,
        reveal: score::Reveal,
        session: SessionId,
        rng: &mut impl Rng,
    ) -> Result<Instance, score::Error> {
        let params = score::Params {
            session,
            bounds: vec![Bounds::new(0.0, 100.0); n],
            reveal,
        };
        let weights: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let fixed = FixedModel::new(&params.bounds, &weights, 1.5, 0.0)?;
        let bands: Vec<f64> = match reveal {
            score::Reveal::Bands { .. } => {
                let thresholds = reveal.thresholds();
                (0..thresholds)
                    .map(|k| (k as f64 - thresholds as f64 / 2.0) * 10.0 * (n as f64).sqrt())
                    .collect()
            }
            _ => Vec::new(),
        };
        let model = score::FiModel::new(fixed, &bands)?;
        let attrs: Vec<f64> = (0..n).map(|_| rng.random_range(0.0..=100.0)).collect();
        let want = score::ideal(&params, &attrs, &model)?;
        Ok(Instance {
            params,
            model,
            attrs,
            want,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn the_test_model_weighs_the_listed_attributes() {
        let m = test_model(-1.0, 0.5, &[0.0, 1.0]);
        let mut want = MODEL_ATTRIBUTES.map(String::from);
        want.sort();
        assert_eq!(m.attributes(), want);
        assert_eq!(m.bands, [0.0, 1.0]);
    }

    #[test]
    fn an_instance_reveals_what_it_was_asked_to() {
        let mut rng = StdRng::seed_from_u64(1);
        for reveal in [score::Reveal::Decision, score::Reveal::Bands { k: 4 }] {
            let i = Instance::random(8, reveal, SessionId([1; 32]), &mut rng).unwrap();
            assert_eq!((i.params.bounds.len(), i.attrs.len()), (8, 8));
            assert_eq!(i.params.reveal, reveal);
            assert_eq!(i.want, score::ideal(&i.params, &i.attrs, &i.model).unwrap());
        }
    }
}
