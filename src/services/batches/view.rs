//! A batch as the Gemini API shows one, whichever upstream runs it: a long-running operation whose
//! `metadata` is the `GenerateContentBatch` (google-genai reads `metadata.state`, `metadata.output`, …).

use serde_json::{Value, json};

use crate::meta::BatchRecord;

pub const PENDING: &str = "BATCH_STATE_PENDING";
pub const RUNNING: &str = "BATCH_STATE_RUNNING";
pub const SUCCEEDED: &str = "BATCH_STATE_SUCCEEDED";
pub const FAILED: &str = "BATCH_STATE_FAILED";
pub const CANCELLED: &str = "BATCH_STATE_CANCELLED";
pub const EXPIRED: &str = "BATCH_STATE_EXPIRED";

/// Vertex AI's job state in the Gemini API's words (a job being cancelled still runs; one that partly
/// succeeded has results to read).
pub fn from_vertex(state: &str) -> &'static str {
    match state {
        "JOB_STATE_SUCCEEDED" | "JOB_STATE_PARTIALLY_SUCCEEDED" => SUCCEEDED,
        "JOB_STATE_FAILED" => FAILED,
        "JOB_STATE_CANCELLED" => CANCELLED,
        "JOB_STATE_EXPIRED" => EXPIRED,
        "JOB_STATE_RUNNING" | "JOB_STATE_UPDATING" | "JOB_STATE_CANCELLING" | "JOB_STATE_PAUSED" => RUNNING,
        _ => PENDING,
    }
}

/// A state from the Gemini API, kept if it is one of its batch states.
pub fn from_gemini(state: &str) -> &'static str {
    [PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED, EXPIRED].into_iter().find(|s| *s == state).unwrap_or(PENDING)
}

pub fn is_final(state: &str) -> bool {
    [SUCCEEDED, FAILED, CANCELLED, EXPIRED].contains(&state)
}

/// The state callers see: a job the upstream finished is still running here until its results are a
/// filegate file, so that an SDK polling for the end finds the results file when it gets there.
pub fn visible_state(batch: &BatchRecord) -> &str {
    if batch.state == SUCCEEDED && batch.output_file.is_none() { RUNNING } else { &batch.state }
}

pub fn batch_view(batch: &BatchRecord) -> Value {
    let name = format!("batches/{}", batch.id);
    let state = visible_state(batch);
    let mut metadata = json!({
        "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
        "name": name,
        "model": batch.model,
        "displayName": batch.display_name.clone().unwrap_or_else(|| name.clone()),
        "state": state,
        "createTime": batch.created_at.to_rfc3339(),
        "updateTime": batch.updated_at.to_rfc3339(),
    });
    if let Some(input) = &batch.input_file {
        metadata["inputConfig"] = json!({"fileName": format!("files/{input}")});
    }
    if let (Some(end), true) = (batch.end_time, is_final(state)) {
        metadata["endTime"] = json!(end.to_rfc3339());
    }
    if let Some(output) = &batch.output_file {
        metadata["output"] = json!({"responsesFile": format!("files/{output}")});
    }
    let mut view = json!({"name": name, "metadata": metadata, "done": is_final(state)});
    if let Some(error) = batch.error.as_deref().and_then(|e| serde_json::from_str::<Value>(e).ok()) {
        view["error"] = error;
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{FileId, ProjectId, Timestamp};

    #[test]
    fn a_finished_job_runs_on_until_its_results_are_a_file() {
        let mut batch = BatchRecord {
            id: "b1".into(),
            project: ProjectId::from_stored("p".into()),
            upstream_name: "projects/x/locations/y/batchPredictionJobs/9".into(),
            model: "models/gemini-test".into(),
            display_name: None,
            state: from_vertex("JOB_STATE_SUCCEEDED").into(),
            input_file: Some(FileId::from_stored("in".into())),
            output_file: None,
            error: None,
            created_at: Timestamp::from_micros(0),
            updated_at: Timestamp::from_micros(0),
            end_time: Some(Timestamp::from_micros(5)),
        };
        let view = batch_view(&batch);
        assert_eq!((view["metadata"]["state"].as_str(), view["done"].as_bool()), (Some(RUNNING), Some(false)));
        assert!(view["metadata"].get("endTime").is_none() && view["metadata"].get("output").is_none());
        batch.output_file = Some(FileId::from_stored("out".into()));
        let view = batch_view(&batch);
        assert_eq!(view["metadata"]["state"], SUCCEEDED);
        assert_eq!(view["metadata"]["output"]["responsesFile"], "files/out");
        assert_eq!(view["metadata"]["inputConfig"]["fileName"], "files/in");
        assert_eq!(from_vertex("JOB_STATE_CANCELLING"), RUNNING);
        assert_eq!(from_gemini("BATCH_STATE_SOMETHING_NEW"), PENDING);
    }
}
