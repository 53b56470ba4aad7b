//! Reading the LLM's answer back into a plan.
//!
//! The answer must contain one JSON object of the shape
//! [`crate::prompt::ANSWER_FORMAT`]: `placement` maps every agent name to a
//! server name, exactly once each; `rationale` is optional free text. Text
//! around the object (a Markdown code fence, a sentence) is tolerated; the
//! object itself is not repaired.

use std::collections::BTreeMap;

use edgehost_placement::model::{Instance, Plan};
use serde::Deserialize;

use crate::{Error, Result};

/// The answer's JSON shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// Agent name to server name, for every agent.
    pub placement: BTreeMap<String, String>,
    /// Why, in the model's words.
    #[serde(default)]
    pub rationale: Option<String>,
}

/// The first `{` to the last `}` of `content`.
fn object_span(content: &str) -> Option<&str> {
    let start = content.find('{')?;
    let end = content.rfind('}')?;
    (end > start).then(|| &content[start..=end])
}

/// Parses the message content into a plan for `instance`.
pub fn parse(instance: &Instance, content: &str) -> Result<(Plan, Option<String>)> {
    let json = object_span(content)
        .ok_or_else(|| Error::Malformed("no JSON object in the answer".into()))?;
    let answer: Answer = serde_json::from_str(json)
        .map_err(|e| Error::Malformed(format!("answer is not the expected JSON: {e}")))?;
    let mut assignment = vec![None; instance.agents.len()];
    for (agent, server) in &answer.placement {
        let a = instance
            .agent_index(agent)
            .ok_or_else(|| Error::Malformed(format!("unknown agent `{agent}`")))?;
        let e = instance
            .server_index(server)
            .ok_or_else(|| Error::Malformed(format!("unknown server `{server}`")))?;
        assignment[a] = Some(e);
    }
    let assignment = assignment
        .into_iter()
        .enumerate()
        .map(|(a, e)| {
            e.ok_or_else(|| {
                Error::Malformed(format!("agent `{}` is not placed", instance.agents[a].name))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((Plan::new(assignment), answer.rationale))
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgehost_placement::scenario::tiny_instance;

    #[test]
    fn reads_fenced_answers() {
        let inst = tiny_instance();
        let content = "Here you go:\n```json\n{\"placement\": {\"planner\": \"alpha\", \"worker\": \"beta\"}, \"rationale\": \"spread\"}\n```";
        let (plan, why) = parse(&inst, content).expect("valid answer");
        assert_eq!(plan.assignment, vec![0, 1]);
        assert_eq!(why.as_deref(), Some("spread"));
    }

    #[test]
    fn rejects_incomplete_or_unknown_names() {
        let inst = tiny_instance();
        for bad in [
            "no json here",
            "{\"placement\": {\"planner\": \"alpha\"}}",
            "{\"placement\": {\"planner\": \"alpha\", \"worker\": \"gamma\"}}",
            "{\"placement\": {\"planner\": \"alpha\", \"ghost\": \"beta\", \"worker\": \"beta\"}}",
            "{\"plan\": [0, 1]}",
        ] {
            assert!(
                matches!(parse(&inst, bad), Err(Error::Malformed(_))),
                "{bad}"
            );
        }
    }
}
