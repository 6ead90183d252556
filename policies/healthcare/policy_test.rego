# Unit tests of the healthcare policy on the bundle's own data.json. Unit
# tests do not see the resource catalog merged in, so inputs carry the
# attributes the catalog gives.
package warden.authz_test

import data.warden.authz

radiology := {
	"id": "ai-agent://prod/radiology/imaging-assistant",
	"trust_domain": "prod",
	"path": ["radiology", "imaging-assistant"],
	"roles": ["radiology-assistant"],
	"owner": "dr-okafor",
	"attributes": {"site": "st-marys"},
	"status": "active",
}

cardiology := object.union(radiology, {"id": "ai-agent://prod/cardiology/echo-assistant", "path": ["cardiology", "echo-assistant"], "roles": ["cardiology-assistant"]})

scheduler := object.union(radiology, {"id": "ai-agent://prod/front-desk/appointment-bot", "path": ["front-desk", "appointment-bot"], "roles": ["scheduling-assistant"], "owner": "team-patient-access"})

auditor := object.union(radiology, {"id": "ai-agent://prod/compliance/records-auditor", "path": ["compliance", "records-auditor"], "roles": ["records-auditor"], "owner": "team-privacy"})

researcher := object.union(radiology, {"id": "ai-agent://prod/research/cohort-builder", "path": ["research", "cohort-builder"], "roles": ["researcher"], "owner": "team-research"})

context := {
	"time": "2026-03-10T08:15:00Z",
	"source": {"ip": "10.60.1.12", "region": "eu-west"},
	"risk": {"score": 10, "level": "low", "signals": []},
	"session": {"id": "s-1", "taints": []},
	"grants": [],
	"delegation": [],
	"approvals": [],
}

record(department) := {
	"kind": "mcp.resource",
	"id": concat("/", ["ehr", department, "patients", "P-20417"]),
	"attributes": {"trust_domain": "prod", "department": department, "pii": true, "record_type": "patient_record"},
}

study := {
	"kind": "mcp.resource",
	"id": "pacs/radiology/studies/1.2.840.113619.2.55",
	"attributes": {"trust_domain": "prod", "department": "radiology", "pii": true, "record_type": "imaging_study"},
}

draft_report := {
	"kind": "mcp.tool",
	"id": "ris/radiology/draft_report",
	"attributes": {"trust_domain": "prod", "department": "radiology", "pii": true},
}

read(agent, resource) := {"agent": agent, "action": "resources/read", "resource": resource, "args": {}, "context": context}

call(agent, resource, args) := {"agent": agent, "action": "tools/call", "resource": resource, "args": args, "context": context}

allowed(inp) if {
	authz.allow with input as inp
	count(authz.deny) == 0 with input as inp
}

reasons(inp) := r if {
	r := authz.deny with input as inp
}

obligations(inp) := o if {
	o := authz.obligations with input as inp
}

test_default_is_deny if {
	not authz.allow with input as {}
	not authz.allow with input as call(radiology, {"kind": "mcp.tool", "id": "scheduling/book_slot", "attributes": {}}, {})
}

test_shipped_data_configures_the_guardrails if {
	data.warden.guardrails.configured
}

# Department fences

test_radiology_reads_a_radiology_record if {
	allowed(read(radiology, record("radiology")))
}

test_radiology_cannot_read_other_departments if {
	reasons(read(radiology, record("cardiology"))) == {"outside_department"}
}

test_radiology_cannot_use_other_departments_tools if {
	inp := call(radiology, {"kind": "mcp.tool", "id": "scheduling/find_slots", "attributes": {"department": "scheduling", "read_only": true}}, {})
	reasons(inp) == {"outside_department"}
}

test_resource_without_department_is_outside_every_department if {
	inp := call(radiology, {"kind": "mcp.tool", "id": "pacs/radiology/export", "attributes": {"trust_domain": "prod"}}, {})
	authz.allow with input as inp
	reasons(inp) == {"outside_department"}
}

test_cardiology_reads_cardiology_only if {
	allowed(read(cardiology, record("cardiology")))
	reasons(read(cardiology, record("radiology"))) == {"outside_department"}
}

test_two_department_roles_reach_both if {
	both := object.union(radiology, {"roles": ["cardiology-assistant", "radiology-assistant"]})
	allowed(read(both, record("radiology")))
	allowed(read(both, record("cardiology")))
}

test_agents_without_department_role_are_not_fenced if {
	allowed(read(scheduler, record("cardiology")))
	allowed(read(auditor, record("radiology")))
}

# Sealed departments

test_oncology_is_sealed_for_every_agent if {
	every agent in [radiology, cardiology, scheduler, auditor] {
		"department_sealed" in reasons(read(agent, record("oncology")))
	}
}

test_oncology_sealed_even_for_the_unfenced if {
	reasons(read(auditor, record("oncology"))) == {"department_sealed"}
	reasons(read(radiology, record("oncology"))) == {"department_sealed", "outside_department"}
}

test_oncology_tools_sealed if {
	matcher := {"kind": "mcp.tool", "id": "oncology/trial_matcher", "attributes": {"department": "oncology", "pii": true, "read_only": true, "record_type": "patient_record"}}
	reasons(call(auditor, matcher, {"patient": "P-20417"})) == {"department_sealed"}
}

# Minimum necessary

test_radiology_patient_record_read_is_redacted if {
	obligations(read(radiology, record("radiology"))) == {"redact": ["patient.address", "patient.name", "patient.ssn"]}
}

test_imaging_study_read_is_redacted if {
	obligations(read(radiology, study)) == {"redact": ["patient.address", "patient.name", "patient.ssn"]}
	allowed(read(radiology, study))
}

test_read_only_tool_call_is_a_read if {
	query := {"kind": "mcp.tool", "id": "pacs/radiology/query_studies", "attributes": {"department": "radiology", "pii": true, "read_only": true, "record_type": "imaging_study"}}
	granted := object.union(call(radiology, query, {"patient_id": "P-4471"}), {"context": {"grants": [{"matches": true}]}})
	allowed(granted)
	obligations(granted) == {"redact": ["patient.address", "patient.name", "patient.ssn"]}
	inp := call(radiology, query, {"patient_id": "P-4471"})
	reasons(inp) == {"no_grant_for_this_patient"}
	obligations(inp) == {"redact": ["patient.address", "patient.name", "patient.ssn"]}
}

test_scheduler_sees_contact_details_not_clinical_data if {
	obligations(read(scheduler, record("radiology"))) == {"redact": ["clinical", "patient.insurance_id", "patient.ssn"]}
}

test_roles_without_a_rule_get_the_default if {
	obligations(read(auditor, record("cardiology"))) == {"redact": [
		"clinical",
		"patient.address",
		"patient.birth_date",
		"patient.insurance_id",
		"patient.name",
		"patient.phone",
		"patient.ssn",
	]}
	obligations(read(auditor, study)) == {"redact": ["patient.address", "patient.birth_date", "patient.name", "patient.ssn"]}
}

test_several_roles_get_the_shared_redactions if {
	both := object.union(scheduler, {"roles": ["radiology-assistant", "scheduling-assistant"]})
	obligations(read(both, record("radiology"))) == {"redact": ["patient.ssn"]}
}

test_a_role_may_need_no_redaction if {
	obligations(read(radiology, record("radiology"))) == {} with data.healthcare.minimum_necessary.patient_record.roles as {"radiology-assistant": []}
}

test_writes_carry_no_redaction if {
	inp := call(radiology, draft_report, {"study": "1.2.840.113619.2.55", "impression": "No acute findings."})
	allowed(inp)
	obligations(inp) == {}
}

test_personal_data_without_a_rule_is_denied if {
	unknown := object.union(record("radiology"), {"attributes": {"record_type": "genomic_panel"}})
	reasons(read(radiology, unknown)) == {"minimum_necessary_undefined"}
	untyped := json.remove(record("radiology"), ["attributes/record_type"])
	reasons(read(radiology, untyped)) == {"minimum_necessary_undefined"}
}

test_non_personal_data_needs_no_rule if {
	dataset := {"kind": "mcp.resource", "id": "research/deidentified/ct-cohort-2025", "attributes": {"department": "research", "pii": false}}
	allowed(read(researcher, dataset))
	obligations(read(researcher, dataset)) == {}
}

test_researcher_cannot_read_patient_records if {
	reasons(read(researcher, record("radiology"))) == {"pii_not_permitted"}
	not authz.allow with input as read(researcher, record("radiology"))
}

# Guardrails in this bundle

test_tainted_scheduler_cannot_text_patients if {
	sms := {"kind": "mcp.tool", "id": "messaging/sms_reminder", "attributes": {"department": "scheduling", "external": true}}
	inp := call(scheduler, sms, {"patient": "P-20417", "template": "appointment-reminder"})
	allowed(inp)
	tainted := object.union(inp, {"context": {"session": {"taints": ["untrusted_content"]}}})
	reasons(tainted) == {"tainted_session_egress"}
}

test_restricted_radiology_assistant_cannot_draft if {
	inp := call(object.union(radiology, {"status": "restricted"}), draft_report, {"study": "1.2.840.113619.2.55"})
	reasons(inp) == {"agent_restricted_read_only"}
	allowed(read(object.union(radiology, {"status": "restricted"}), record("radiology")))
}

test_missing_configuration_denies_everything if {
	r := authz.deny with input as read(radiology, record("radiology"))
		with data.healthcare as object.remove(data.healthcare, ["sealed_departments"])
	r == {"healthcare_not_configured"}
	authz.configured
}

# Bulk reads and risk

export_studies := {
	"kind": "mcp.tool",
	"id": "pacs/radiology/export_studies",
	"attributes": {"trust_domain": "prod", "department": "radiology", "pii": true, "read_only": true, "record_type": "imaging_study", "bulk": true},
}

at_risk(inp, level) := object.union(inp, {"context": {"risk": {"score": 30, "level": level, "signals": ["rate_spike"]}}})

test_bulk_export_at_low_risk if {
	allowed(call(radiology, export_studies, {"modality": "CT"}))
}

test_no_bulk_export_at_medium_risk if {
	reasons := authz.deny with input as at_risk(call(radiology, export_studies, {"modality": "CT"}), "medium")
	reasons == {"bulk_read_at_risk"}
}

test_single_study_still_read_at_medium_risk if {
	allowed(at_risk(read(radiology, study), "medium"))
}
