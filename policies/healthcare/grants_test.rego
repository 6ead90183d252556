package warden.grants_test

import data.warden.grants

request(roles, task, grant) := {
	"requester": {"id": "ai-agent://prod/radiology/imaging-assistant", "kind": "agent", "roles": roles},
	"agent": {"id": "ai-agent://prod/radiology/imaging-assistant", "roles": roles, "owner": "dr-okafor", "status": "active", "attributes": {}},
	"grant": object.union({"task": task, "actions": ["tools/call"], "resources": ["pacs/radiology/query_studies"], "constraints": {"patient_id": "P-4471"}, "lifetime_seconds": 1800, "reason": "study"}, grant),
	"context": {"time": "2026-03-10T08:00:00Z"},
}

test_one_patient_for_one_study_is_given if {
	grants.decision == {"outcome": "grant", "max_lifetime": "1h"} with input as request(["radiology-assistant"], "study-1.2.840.4471", {})
}

test_without_a_task_refused if {
	grants.decision.outcome == "deny" with input as request(["radiology-assistant"], "", {})
}

test_every_patient_refused if {
	grants.decision.outcome == "deny" with input as request(["radiology-assistant"], "study-1", {"constraints": {"modality": "CT"}})
}

test_other_roles_refused if {
	grants.decision.outcome == "deny" with input as request(["scheduling-assistant"], "study-1", {})
}

test_other_tools_refused if {
	grants.decision.outcome == "deny" with input as request(["radiology-assistant"], "study-1", {"resources": ["pacs/radiology/export_studies"]})
}
