#!/usr/bin/env python3
"""Write the Kafka envelope fixtures under tests/fixtures/envelopes/.

The cases below are the single source of truth. Each case is written in the two forms real
HuleEdu producers emit:

  <case>.dumps.json    json.dumps(envelope)                    (", " / ": ", \\uXXXX escapes)
  <case>.compact.json  json.dumps(envelope, separators=(",", ":"), ensure_ascii=False), UTF-8

Neither form ends with a newline. `_unknown/` holds an event type herald does not know,
`_invalid/` single files that must be rejected (see tests/fixtures/envelopes/README.md).

Usage:  python3 scripts/make-envelope-fixtures.py           # (re)write the files
        python3 scripts/make-envelope-fixtures.py --check   # exit 1 if any file is stale
Stdlib only.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "envelopes"

# ----------------------------------------------------------------------------- ids
TEACHER_ASA = "6ebfe36f-49a5-4715-b1ba-ed972bfb7fa5"
TEACHER_JOSE = "910c3e19-a930-4661-8f5d-c260252b3383"

BATCH_1 = "46738bcb-929c-40dd-8c20-578530cbb2e8"  # ENG5 class batch (Åsa)
BATCH_2 = "f4610a65-dd56-49fc-bcbf-c8a098b908cd"  # SV2 guest batch (José)
BATCH_3 = "abb3f9dc-c3ad-4367-b148-6e431f974549"

ESSAY_1 = "a2a65c80-8da3-4e26-970a-155892b2fd73"
ESSAY_2 = "30e82f33-318e-448b-89ab-4e44b7ce0cf3"
ESSAY_3 = "8d004530-ec72-4793-b419-4c9043e238ba"
ESSAY_4 = "629a094a-d160-4e32-a8e9-14f6d210d5f1"
ESSAY_5 = "70136137-248c-4d1f-b030-3247861b4e51"
ESSAY_6 = "01476569-8d36-4bda-b0fd-372973ce09d3"

TEXT_1 = "ad968653fd054b1092baa4eb00a51af9"
TEXT_2 = "37adb57b5d8141ebb09f8f00e51f77a3"
TEXT_3 = "e6084947dce34fd8ae458d378b24d3f4"
TEXT_4 = "1ae15620edb6403c88811aa592ea7690"
TEXT_5 = "d5d02b3b3c2e4ba9809d08357999f127"
TEXT_1_CORRECTED = "8a82ffa14e104e3eaa52300bb673f47b"

UPLOAD_1 = "8d96771f-85d6-47c0-b0b0-aa875f9ff8c4"
UPLOAD_2 = "63ec4a9f-a686-493f-8d04-d761368da666"
UPLOAD_3 = "dc5c9263-b9a3-4de8-a523-020fe39b25c2"
UPLOAD_4 = "0763984d-95c0-4962-a840-916c18beabc3"

RAW_1 = "449d85f559294af3813677fe0c8f91f2"
RAW_2 = "f8b4f459b0244ef8bfdb48869a33b6f4"
RAW_3 = "8d642250a1d14991a2f105c463f802e1"

CLASS_9A = "1559a778-c5d4-4b3b-a060-c75cbba3f118"
CLASS_8B = "cd2e17de-0b22-490a-9694-793e4611267f"

STUDENT_ASA = "bee60681-7e63-4c42-ad04-deb7a0af5dfe"
STUDENT_JOSE = "fcba40ed-b078-403c-9c26-af98ef1be97d"

TRACE_1 = "00-6f0d37c3f72228f3e02ec0f9d02f4fc8-c96e9948590a39b2-01"
TRACE_2 = "00-b1051ff33be4f55e51665cd9f067b895-62d1c427e16c0d06-01"
TRACE_3 = "00-7c4f3be01363768bb7afd104da2f96ff-bd98de08c7fb35d7-01"
TRACE_4 = "00-ab0959ea6cfbaaf0f3da897f3177c2ff-3191e73af9fc1379-01"
TRACE_5 = "00-0328a8b0fe0408df43b89e56b04e284a-3f50a75243e379b5-01"


def envelope(event_id, event_type, event_timestamp, source_service, correlation_id, data,
             metadata=None, data_schema_uri=None, schema_version=1):
    """An EventEnvelope dict with the producers' key order."""
    return {
        "event_id": event_id,
        "event_type": event_type,
        "event_timestamp": event_timestamp,
        "source_service": source_service,
        "schema_version": schema_version,
        "correlation_id": correlation_id,
        "data_schema_uri": data_schema_uri,
        "data": data,
        "metadata": metadata,
    }


def spm(entity_id, entity_type, timestamp, *, parent_id=None, processing_stage=None,
        started_at=None, completed_at=None, event=None, error_info=None):
    """SystemProcessingMetadata as pydantic dumps it (every key present)."""
    return {
        "entity_id": entity_id,
        "entity_type": entity_type,
        "parent_id": parent_id,
        "timestamp": timestamp,
        "processing_stage": processing_stage,
        "started_at": started_at,
        "completed_at": completed_at,
        "event": event,
        "error_info": {} if error_info is None else error_info,
    }


def error_detail(error_code, message, correlation_id, timestamp, service, operation, *,
                 details=None, stack_trace=None, trace_id=None, span_id=None, omit_details=False):
    d = {
        "error_code": error_code,
        "message": message,
        "correlation_id": correlation_id,
        "timestamp": timestamp,
        "service": service,
        "operation": operation,
    }
    if not omit_details:
        d["details"] = {} if details is None else details
    d["stack_trace"] = stack_trace
    d["trace_id"] = trace_id
    d["span_id"] = span_id
    return d


def ref(essay_id, text_storage_id):
    return {"essay_id": essay_id, "text_storage_id": text_storage_id}


CASES: dict[str, dict[str, dict]] = {}

# ----------------------------------------------------------------------------- 1 batch_file_added
CASES["batch_file_added"] = {
    "basic": envelope(
        "4b24b71c-9635-40f7-b999-df7ebc99c233", "huleedu.file.batch.file.added.v1",
        "2025-08-01T08:14:13.512331Z", "file-service", "c8c7a046-2b27-4aa6-ae3b-b03a74e754c5",
        {
            "event": "batch.file.added",
            "batch_id": BATCH_1,
            "file_upload_id": UPLOAD_1,
            "filename": "Åsa Öberg - Argumenterande text.docx",
            "user_id": TEACHER_ASA,
            "correlation_id": "c8c7a046-2b27-4aa6-ae3b-b03a74e754c5",
            "timestamp": "2025-08-01T08:14:13.498017Z",
        },
        metadata={"traceparent": TRACE_1},
    ),
    "emoji_filename": envelope(
        "f172ace1-396d-4d44-908a-4f7976ef7f4f", "huleedu.file.batch.file.added.v1",
        "2025-08-01T08:14:15.020554Z", "file-service", "764fa893-49b1-49ae-bc71-bd2a7b0f0f42",
        {
            "event": "batch.file.added",
            "batch_id": BATCH_2,
            "file_upload_id": UPLOAD_2,
            "filename": "uppsats 📝.docx",
            "user_id": TEACHER_JOSE,
            "correlation_id": "764fa893-49b1-49ae-bc71-bd2a7b0f0f42",
            "timestamp": "2025-08-01T08:14:15Z",
        },
        metadata=None,
    ),
    # only the required keys: event, correlation_id and timestamp absent
    "minimal": envelope(
        "6e2d28db-3e21-4dde-9d79-68224d1bac5a", "huleedu.file.batch.file.added.v1",
        "2025-08-01T08:15:02.104889Z", "file-service", "2a3de257-f236-4263-8e55-bf78c03dbce4",
        {
            "batch_id": BATCH_1,
            "file_upload_id": UPLOAD_3,
            "filename": "José Núñez.pdf",
            "user_id": TEACHER_ASA,
        },
        metadata={},
    ),
}

# ----------------------------------------------------------------------------- 2 batch_file_removed
CASES["batch_file_removed"] = {
    "basic": envelope(
        "0897119c-d32e-485d-967a-7434f657e15a", "huleedu.file.batch.file.removed.v1",
        "2025-08-01T08:21:47.730112Z", "file-service", "416b87f8-cb88-497c-8616-f7bc9a278d74",
        {
            "event": "batch.file.removed",
            "batch_id": BATCH_1,
            "file_upload_id": UPLOAD_3,
            "filename": f"file_{UPLOAD_3}",
            "user_id": TEACHER_ASA,
            "correlation_id": "416b87f8-cb88-497c-8616-f7bc9a278d74",
            "timestamp": "2025-08-01T08:21:47.712950Z",
        },
        metadata={},
    ),
    # traced with a tracestate; `event` absent
    "traced": envelope(
        "619d02f0-dd90-40b7-94e6-b61980539b56", "huleedu.file.batch.file.removed.v1",
        "2025-08-01T09:02:31.004417Z", "file-service", "93fbf256-4aef-40b4-a2bf-62b27e35e533",
        {
            "batch_id": BATCH_2,
            "file_upload_id": UPLOAD_2,
            "filename": f"file_{UPLOAD_2}",
            "user_id": TEACHER_JOSE,
            "correlation_id": "93fbf256-4aef-40b4-a2bf-62b27e35e533",
            "timestamp": "2025-08-01T09:02:30.998801Z",
        },
        metadata={"traceparent": TRACE_2, "tracestate": "rojo=00f067aa0ba902b7"},
    ),
}

# ----------------------------------------------------------------------------- 3 batch_essays_ready
CASES["batch_essays_ready"] = {
    "basic": envelope(
        "26ef4846-d692-4ccb-9227-0a24f7d6fe78", "huleedu.batch.essays.ready.v1",
        "2025-08-01T08:30:05.118230Z", "essay-lifecycle-service", "d82df65d-e704-436b-996d-d2979bb4cacc",
        {
            "event": "batch.essays.ready",
            "batch_id": BATCH_1,
            "ready_essays": [ref(ESSAY_1, TEXT_1), ref(ESSAY_2, TEXT_2), ref(ESSAY_3, TEXT_3)],
            "metadata": spm(BATCH_1, "batch", "2025-08-01T08:30:05.101764Z",
                            processing_stage="completed", event="batch.essays.ready"),
            "course_code": "ENG5",
            "course_language": "en",
            "essay_instructions": "Write an argumentative essay (400–600 words) on whether "
                                  "schools should ban mobile phones. Use at least two sources.",
            "class_type": "REGULAR",
            "teacher_first_name": "Åsa",
            "teacher_last_name": "Öberg",
        },
        metadata={"traceparent": TRACE_3},
    ),
    # alias event type, Swedish course, empty instructions, guest batch, teacher names null
    "alias_els": envelope(
        "b32c891b-952a-4a66-9caf-4b2bc03873ff", "huleedu.els.batch.essays.ready.v1",
        "2025-08-01T10:11:40.640051Z", "essay-lifecycle-service", "6dd144ae-b204-43bf-ac25-cfade3a18fdb",
        {
            "event": "batch.essays.ready",
            "batch_id": BATCH_2,
            "ready_essays": [ref(ESSAY_4, TEXT_4), ref(ESSAY_5, TEXT_5)],
            "metadata": spm(BATCH_2, "batch", "2025-08-01T10:11:40.633905Z"),
            "course_code": "SV2",
            "course_language": "sv",
            "essay_instructions": "",
            "class_type": "GUEST",
            "teacher_first_name": None,
            "teacher_last_name": None,
        },
        metadata=None,
    ),
    # a course code added after herald was built; teacher names absent
    "new_course_code": envelope(
        "8d1c9d04-fb96-47a5-a7cb-61aa41297f0f", "huleedu.batch.essays.ready.v1",
        "2025-08-02T07:45:12.300918Z", "essay-lifecycle-service", "e5872655-3f8c-4066-a8fd-e161dc3807ed",
        {
            "event": "batch.essays.ready",
            "batch_id": BATCH_3,
            "ready_essays": [ref(ESSAY_6, TEXT_1)],
            "metadata": spm(BATCH_3, "batch", "2025-08-02T07:45:12.290114Z",
                            processing_stage="processing",
                            started_at="2025-08-02T07:44:58.002311Z"),
            "course_code": "ENG8",
            "course_language": "en",
            "essay_instructions": "Describe a place that matters to you.",
            "class_type": "REGULAR",
        },
        metadata={},
    ),
}

# ----------------------------------------------------------------------------- 4 batch_validation_errors
CASES["batch_validation_errors"] = {
    "basic": envelope(
        "0ec6324b-b175-4a2b-8b67-4baf973c92a7", "huleedu.batch.validation.errors.v1",
        "2025-08-01T08:29:58.871203Z", "essay-lifecycle-service", "64aba9e9-e54d-4e7c-99d7-5d531be7e273",
        {
            "event": "batch.validation.errors.v1",
            "batch_id": BATCH_1,
            "failed_essays": [
                {
                    "essay_id": ESSAY_2,
                    "file_name": "Björn Ståhl.docx",
                    "error_detail": error_detail(
                        "EMPTY_CONTENT", "File content is empty",
                        "64aba9e9-e54d-4e7c-99d7-5d531be7e273", "2025-08-01T08:29:58.512004Z",
                        "essay-lifecycle-service", "validate_essay_content",
                        details={"file_upload_id": UPLOAD_2, "content_length": 0}),
                    "failed_at": "2025-08-01T08:29:58.512100Z",
                },
                {
                    "essay_id": ESSAY_3,
                    "file_name": "scan_0042.pdf",
                    "error_detail": error_detail(
                        "TEXT_EXTRACTION_FAILED", "Could not extract text from PDF",
                        "64aba9e9-e54d-4e7c-99d7-5d531be7e273", "2025-08-01T08:29:58.701377Z",
                        "essay-lifecycle-service", "validate_essay_content"),
                    "failed_at": "2025-08-01T08:29:58.701420Z",
                },
            ],
            "error_summary": {
                "total_errors": 2,
                "error_categories": {"EMPTY_CONTENT": 1, "TEXT_EXTRACTION_FAILED": 1},
                "critical_failure": False,
            },
            "correlation_id": "64aba9e9-e54d-4e7c-99d7-5d531be7e273",
            "metadata": spm(BATCH_1, "batch", "2025-08-01T08:29:58.869514Z",
                            processing_stage="failed", event="batch.validation.errors"),
        },
        metadata={"traceparent": TRACE_4},
    ),
    # alias event type; critical failure; failed_at, details, correlation_id and event absent
    "alias_els": envelope(
        "63c41cb2-b2fc-4076-8c7d-0d0ae370c462", "huleedu.els.batch.validation.errors.v1",
        "2025-08-01T10:05:02.015662Z", "essay-lifecycle-service", "88491716-8f2d-4cc2-8938-8db07233e781",
        {
            "batch_id": BATCH_2,
            "failed_essays": [
                {
                    "essay_id": ESSAY_4,
                    "file_name": "uppsats 📝.docx",
                    "error_detail": error_detail(
                        "ENCRYPTED_FILE_UNSUPPORTED", "Lösenordsskyddade filer stöds inte",
                        "88491716-8f2d-4cc2-8938-8db07233e781", "2025-08-01T10:05:01.870230Z",
                        "file-service", "extract_text",
                        trace_id="b1051ff33be4f55e51665cd9f067b895", span_id="62d1c427e16c0d06",
                        omit_details=True),
                },
            ],
            "error_summary": {
                "total_errors": 1,
                "error_categories": {"ENCRYPTED_FILE_UNSUPPORTED": 1},
                "critical_failure": True,
            },
            "metadata": spm(BATCH_2, "batch", "2025-08-01T10:05:02.010004Z"),
        },
        metadata=None,
    ),
}

# ----------------------------------------------------------------------------- 5 batch_content_provisioning_completed
CASES["batch_content_provisioning_completed"] = {
    "basic": envelope(
        "b3899f2d-9431-4053-be99-c3de24622601", "huleedu.batch.content.provisioning.completed.v1",
        "2025-08-01T08:30:04.995420Z", "essay-lifecycle-service", "6a3aa27b-5fdb-44d8-9ebd-a481284a634e",
        {
            "event": "batch.content.provisioning.completed",
            "batch_id": BATCH_1,
            "provisioned_count": 3,
            "expected_count": 3,
            "course_code": "ENG5",
            "user_id": TEACHER_ASA,
            "essays_for_processing": [ref(ESSAY_1, TEXT_1), ref(ESSAY_2, TEXT_2), ref(ESSAY_3, TEXT_3)],
            "correlation_id": "6a3aa27b-5fdb-44d8-9ebd-a481284a634e",
            "timestamp": "2025-08-01T08:30:04.981337Z",
        },
        metadata={"traceparent": TRACE_5},
    ),
    # alias event type; correlation_id and timestamp absent
    "alias_els": envelope(
        "ff942146-32fa-44da-8f19-f6302d405e2c", "huleedu.els.batch.content.provisioning.completed.v1",
        "2025-08-01T10:11:40.598275Z", "essay-lifecycle-service", "bf6b9621-3ab3-4c61-aae6-34038dfb1287",
        {
            "event": "batch.content.provisioning.completed",
            "batch_id": BATCH_2,
            "provisioned_count": 2,
            "expected_count": 3,
            "course_code": "SV2",
            "user_id": TEACHER_JOSE,
            "essays_for_processing": [ref(ESSAY_4, TEXT_4), ref(ESSAY_5, TEXT_5)],
        },
        metadata={},
    ),
    # the producer path that does not know the owner
    "unknown_user": envelope(
        "013eb5a5-fa69-4539-b0b6-29d8d0cc6ca7", "huleedu.batch.content.provisioning.completed.v1",
        "2025-08-02T07:44:57.880061Z", "essay-lifecycle-service", "875fa138-21d9-4878-89f9-76801c9dc364",
        {
            "event": "batch.content.provisioning.completed",
            "batch_id": BATCH_3,
            "provisioned_count": 1,
            "expected_count": 1,
            "course_code": "SV1",
            "user_id": "unknown",
            "essays_for_processing": [ref(ESSAY_6, TEXT_1)],
            "correlation_id": "875fa138-21d9-4878-89f9-76801c9dc364",
            "timestamp": "2025-08-02T07:44:57.871140Z",
        },
        metadata=None,
    ),
}

# ----------------------------------------------------------------------------- 6 cj_assessment_completed
CASES["cj_assessment_completed"] = {
    "basic": envelope(
        "9eaa8caf-f51c-40f0-8f8a-9767d9e98a1f", "huleedu.cj_assessment.completed.v1",
        "2025-08-01T09:12:44.310785Z", "cj_assessment_service", "07e9d6fc-8a2c-403a-a598-cd9d23f664d6",
        {
            "event_name": "cj_assessment.completed",
            "entity_id": BATCH_1,
            "entity_type": "batch",
            "parent_id": None,
            "timestamp": "2025-08-01T09:12:44.296512Z",
            "status": "completed_successfully",
            "system_metadata": spm(BATCH_1, "batch", "2025-08-01T09:12:44.296530Z",
                                   processing_stage="completed", event="cj_assessment.completed"),
            "cj_assessment_job_id": "1842",
            "rankings": [
                {"rank": 1, "els_essay_id": ESSAY_3, "score": 1.4127},
                {"rank": 2, "els_essay_id": ESSAY_1, "score": 0.2384},
                {"rank": 3, "els_essay_id": ESSAY_2, "score": -1.6511},
            ],
        },
        metadata={"traceparent": TRACE_1},
    ),
    # the unprefixed event type; one essay without a score
    "alias_unprefixed": envelope(
        "d8bec3ff-7bc8-4791-9663-45d2928c0cc3", "cj_assessment.completed.v1",
        "2025-08-01T11:40:09.007720Z", "cj_assessment_service", "5c76cd3b-ab1e-4e8d-bfbf-d6750637814c",
        {
            "event_name": "cj_assessment.completed",
            "entity_id": BATCH_2,
            "entity_type": "batch",
            "parent_id": None,
            "timestamp": "2025-08-01T11:40:08.990341Z",
            "status": "completed_with_failures",
            "system_metadata": spm(BATCH_2, "batch", "2025-08-01T11:40:08.990360Z"),
            "cj_assessment_job_id": "1857",
            "rankings": [
                {"rank": 1, "els_essay_id": ESSAY_5, "score": 0.0},
                {"rank": 2, "els_essay_id": ESSAY_4, "score": None},
            ],
        },
        metadata=None,
    ),
}

# ----------------------------------------------------------------------------- 7 spellcheck_completed
CASES["spellcheck_completed"] = {
    "success": envelope(
        "c798da5f-4792-47bd-aa3c-087e29763d95", "huleedu.essay.spellcheck.completed.v1",
        "2025-08-01T08:31:22.455106Z", "spellchecker-service", "0ca133a1-4895-4b1f-bcc4-b7e21931be2b",
        {
            "event_name": "essay.spellcheck.completed",
            "entity_id": ESSAY_1,
            "entity_type": "essay",
            "parent_id": BATCH_1,
            "timestamp": "2025-08-01T08:31:22.440871Z",
            "status": "spellchecked_success",
            "system_metadata": spm(ESSAY_1, "essay", "2025-08-01T08:31:22.440890Z",
                                   parent_id=BATCH_1, processing_stage="completed",
                                   started_at="2025-08-01T08:31:20.118044Z",
                                   completed_at="2025-08-01T08:31:22.440012Z",
                                   event="essay.spellcheck.completed"),
            "original_text_storage_id": TEXT_1,
            "storage_metadata": {"references": {"corrected_text": {"default": TEXT_1_CORRECTED}}},
            "corrections_made": 7,
        },
        metadata={"traceparent": TRACE_2},
    ),
    # failure: error_info filled, storage_metadata and corrections_made null
    "failed": envelope(
        "6d36337f-d12a-4cae-9308-6fe02e00ac72", "huleedu.essay.spellcheck.completed.v1",
        "2025-08-01T08:31:25.871430Z", "spellchecker-service", "282ec4e3-db50-4e14-80db-fe2b6f3dee9a",
        {
            "event_name": "essay.spellcheck.completed",
            "entity_id": ESSAY_2,
            "entity_type": "essay",
            "parent_id": BATCH_1,
            "timestamp": "2025-08-01T08:31:25.860117Z",
            "status": "spellcheck_failed",
            "system_metadata": spm(
                ESSAY_2, "essay", "2025-08-01T08:31:25.860130Z", parent_id=BATCH_1,
                processing_stage="failed", event="essay.spellcheck.completed",
                error_info={
                    "error_code": "CONTENT_SERVICE_ERROR",
                    "error_message": "Failed to fetch text ae24cf7e69d743b9a4e6e989d15e062d: 503 Service Unavailable",
                    "correlation_id": "282ec4e3-db50-4e14-80db-fe2b6f3dee9a",
                    "timestamp": "2025-08-01T08:31:25.859002Z",
                    "service": "spellchecker-service",
                    "details": {"storage_id": "ae24cf7e69d743b9a4e6e989d15e062d", "status_code": 503,
                                "retry_attempts": 3},
                }),
            "original_text_storage_id": TEXT_2,
            "storage_metadata": None,
            "corrections_made": None,
        },
        metadata={},
    ),
    # Swedish essay, no corrections; storage_metadata and corrections_made absent, no entity_type
    "no_optional_keys": envelope(
        "6ec11bff-f173-4703-ae83-20fb26d821e1", "huleedu.essay.spellcheck.completed.v1",
        "2025-08-01T10:13:02.530478Z", "spellchecker-service", "d01646de-50e1-4230-afb9-49776a65bd70",
        {
            "event_name": "essay.spellcheck.completed",
            "entity_id": ESSAY_4,
            "parent_id": BATCH_2,
            "timestamp": "2025-08-01T10:13:02.519004Z",
            "status": "spellchecked_success",
            "system_metadata": spm(ESSAY_4, "essay", "2025-08-01T10:13:02.519020Z", parent_id=BATCH_2),
            "original_text_storage_id": TEXT_4,
        },
        metadata=None,
    ),
}

# ----------------------------------------------------------------------------- 8 batch_phase_outcome
CASES["batch_phase_outcome"] = {
    "basic": envelope(
        "0f16106e-7cac-4177-8350-aad96c72a9e0", "huleedu.els.batch.phase.outcome.v1",
        "2025-08-01T08:31:40.002917Z", "essay-lifecycle-service", "f7c41166-dbc7-41ec-8055-b41d07c36de4",
        {
            "batch_id": BATCH_1,
            "phase_name": "spellcheck",
            "phase_status": "completed_successfully",
            "processed_essays": [ref(ESSAY_1, TEXT_1_CORRECTED), ref(ESSAY_3, TEXT_3)],
            "failed_essay_ids": [],
            "correlation_id": "f7c41166-dbc7-41ec-8055-b41d07c36de4",
        },
        metadata={"traceparent": TRACE_3},
    ),
    # one failed essay; correlation_id absent
    "with_failures": envelope(
        "24b6bcbf-3e29-4ded-8cd7-242cdc632cab", "huleedu.els.batch.phase.outcome.v1",
        "2025-08-01T11:40:10.445312Z", "essay-lifecycle-service", "c540ea46-e167-4037-9cac-97ba09c962b4",
        {
            "batch_id": BATCH_2,
            "phase_name": "cj_assessment",
            "phase_status": "completed_with_failures",
            "processed_essays": [ref(ESSAY_5, TEXT_5)],
            "failed_essay_ids": [ESSAY_4],
        },
        metadata=None,
    ),
    # a phase name added after herald was built
    "new_phase_name": envelope(
        "c54df65a-d743-424f-8810-d4d8a60d4acf", "huleedu.els.batch.phase.outcome.v1",
        "2025-08-02T08:02:19.771846Z", "essay-lifecycle-service", "320c5a8a-88de-4db8-9182-852c397cc5e5",
        {
            "batch_id": BATCH_3,
            "phase_name": "nlp_v2",
            "phase_status": "failed_critically",
            "processed_essays": [],
            "failed_essay_ids": [ESSAY_6],
            "correlation_id": "320c5a8a-88de-4db8-9182-852c397cc5e5",
        },
        metadata={},
    ),
}

# ----------------------------------------------------------------------------- 9 essay_content_provisioned
CASES["essay_content_provisioned"] = {
    "basic": envelope(
        "fcc5932e-343b-4bb8-a4c3-289442cf0f77", "huleedu.essay.content.provisioned.v1",
        "2025-08-01T08:14:14.902285Z", "file-service", "c8c7a046-2b27-4aa6-ae3b-b03a74e754c5",
        {
            "event": "essay.content.provisioned",
            "entity_id": BATCH_1,
            "file_upload_id": UPLOAD_1,
            "original_file_name": "Åsa Öberg - Argumenterande text.docx",
            "raw_file_storage_id": RAW_1,
            "text_storage_id": TEXT_1,
            "file_size_bytes": 24576,
            "content_md5_hash": "9e107d9d372bb6826bd81d3542a419d6",
            "correlation_id": "c8c7a046-2b27-4aa6-ae3b-b03a74e754c5",
            "timestamp": "2025-08-01T08:14:14.890042Z",
        },
        metadata={"traceparent": TRACE_1},
    ),
    # alias event type; content_md5_hash null; emoji file name
    "alias_file": envelope(
        "0139eb8d-15b0-429a-b07c-d01c0649e53f", "huleedu.file.essay.content.provisioned.v1",
        "2025-08-01T08:14:16.338190Z", "file-service", "764fa893-49b1-49ae-bc71-bd2a7b0f0f42",
        {
            "event": "essay.content.provisioned",
            "entity_id": BATCH_2,
            "file_upload_id": UPLOAD_2,
            "original_file_name": "uppsats 📝.docx",
            "raw_file_storage_id": RAW_2,
            "text_storage_id": TEXT_4,
            "file_size_bytes": 18204,
            "content_md5_hash": None,
            "correlation_id": "764fa893-49b1-49ae-bc71-bd2a7b0f0f42",
            "timestamp": "2025-08-01T08:14:16.330501Z",
        },
        metadata=None,
    ),
    # content_md5_hash, correlation_id, timestamp and event absent
    "minimal": envelope(
        "264bb4a4-f2f1-4d78-a0a3-c4dec51e5c7f", "huleedu.essay.content.provisioned.v1",
        "2025-08-02T07:44:51.650078Z", "file-service", "179e7d56-a980-4f80-a851-451ec876938b",
        {
            "entity_id": BATCH_3,
            "file_upload_id": UPLOAD_4,
            "original_file_name": "zoë_müller.txt",
            "raw_file_storage_id": RAW_3,
            "text_storage_id": TEXT_1,
            "file_size_bytes": 3120,
        },
        metadata={},
    ),
}

# ----------------------------------------------------------------------------- 10 essay_validation_failed
CASES["essay_validation_failed"] = {
    "basic": envelope(
        "b532acf6-628d-485e-99ad-28a8c48c33ff", "huleedu.essay.validation.failed.v1",
        "2025-08-01T08:14:17.208841Z", "file-service", "a68d30c2-09e1-490f-a202-0f18f3f29b75",
        {
            "event": "essay.validation.failed",
            "entity_id": BATCH_1,
            "file_upload_id": UPLOAD_3,
            "original_file_name": "José Núñez.pdf",
            "raw_file_storage_id": RAW_3,
            "validation_error_code": "CONTENT_TOO_SHORT",
            "validation_error_detail": error_detail(
                "CONTENT_TOO_SHORT", "Content too short: 12 characters (minimum 50)",
                "a68d30c2-09e1-490f-a202-0f18f3f29b75", "2025-08-01T08:14:17.190224Z",
                "file-service", "validate_content",
                details={"content_length": 12, "min_length": 50}),
            "file_size_bytes": 10482,
            "correlation_id": "a68d30c2-09e1-490f-a202-0f18f3f29b75",
            "timestamp": "2025-08-01T08:14:17.190301Z",
        },
        metadata={"traceparent": TRACE_4},
    ),
    # alias event type; storing the raw file failed
    "alias_file": envelope(
        "fab727f5-57f9-4132-9204-a0e742bd111d", "huleedu.file.essay.validation.failed.v1",
        "2025-08-01T09:58:03.117260Z", "file-service", "51c3e703-d3cd-4a09-ae3c-2286e552e0c3",
        {
            "event": "essay.validation.failed",
            "entity_id": BATCH_2,
            "file_upload_id": UPLOAD_4,
            "original_file_name": "Sjöberg_uppsats.docx",
            "raw_file_storage_id": "STORAGE_FAILED",
            "validation_error_code": "RAW_STORAGE_FAILED",
            "validation_error_detail": error_detail(
                "RAW_STORAGE_FAILED", "Failed to store raw file in content service",
                "51c3e703-d3cd-4a09-ae3c-2286e552e0c3", "2025-08-01T09:58:03.101955Z",
                "file-service", "store_raw_file",
                details={"status_code": 500},
                stack_trace="Traceback (most recent call last):\n  File \"/app/core_logic.py\", "
                            "line 88, in store_raw_file\nhttpx.HTTPStatusError: 500"),
            "file_size_bytes": 51200,
            "correlation_id": "51c3e703-d3cd-4a09-ae3c-2286e552e0c3",
            "timestamp": "2025-08-01T09:58:03.102008Z",
        },
        metadata=None,
    ),
}

# ----------------------------------------------------------------------------- 11 class_created
CASES["class_created"] = {
    "basic": envelope(
        "07c0797f-5142-4818-9397-f7a43a8dd759", "huleedu.class.created.v1",
        "2025-07-31T13:02:44.601339Z", "class-management-service", "e33d51d6-0ed5-44f6-b8cd-b1df469d4783",
        {
            "event": "class.created",
            "class_id": CLASS_9A,
            "class_designation": "9A Svenska",
            "course_codes": ["SV1", "SV2"],
            "user_id": TEACHER_ASA,
            "correlation_id": "e33d51d6-0ed5-44f6-b8cd-b1df469d4783",
            "timestamp": "2025-07-31T13:02:44.588120Z",
        },
        metadata={"traceparent": TRACE_5},
    ),
    # a course code added after herald was built; event and correlation_id absent
    "new_course_code": envelope(
        "5fafbd47-0013-4716-9140-97a243a3b340", "huleedu.class.created.v1",
        "2025-07-31T13:05:10.014552Z", "class-management-service", "0293384a-030b-4a91-bac0-25654d57c3a5",
        {
            "class_id": CLASS_8B,
            "class_designation": "Åk 8 – Engelska",
            "course_codes": ["ENG5", "ENG8"],
            "user_id": TEACHER_JOSE,
            "timestamp": "2025-07-31T13:05:10.001947Z",
        },
        metadata=None,
    ),
}

# ----------------------------------------------------------------------------- 12 student_created
CASES["student_created"] = {
    "basic": envelope(
        "4eddb045-7b5b-47d7-88c3-1e533fec1048", "huleedu.student.created.v1",
        "2025-07-31T13:10:21.772306Z", "class-management-service", "772126c3-0976-4621-b551-8593ec16dca4",
        {
            "event": "student.created",
            "student_id": STUDENT_ASA,
            "first_name": "Åsa",
            "last_name": "Öberg",
            "student_email": "asa.oberg@elev.skola.se",
            "class_ids": [CLASS_9A],
            "created_by_user_id": TEACHER_ASA,
            "correlation_id": "772126c3-0976-4621-b551-8593ec16dca4",
            "timestamp": "2025-07-31T13:10:21.760919Z",
        },
        metadata={},
    ),
    # alias event type; no email known; two classes
    "alias_class": envelope(
        "30463460-4bb0-43cc-989f-dd97899a2367", "huleedu.class.student.created.v1",
        "2025-07-31T13:11:02.118437Z", "class-management-service", "a50419d1-6b8a-450a-a542-82cd5723e5a0",
        {
            "event": "student.created",
            "student_id": STUDENT_JOSE,
            "first_name": "José",
            "last_name": "Núñez García",
            "student_email": None,
            "class_ids": [CLASS_8B, CLASS_9A],
            "created_by_user_id": TEACHER_JOSE,
            "correlation_id": "a50419d1-6b8a-450a-a542-82cd5723e5a0",
            "timestamp": "2025-07-31T13:11:02.106580Z",
        },
        metadata={"traceparent": TRACE_2},
    ),
}

# ----------------------------------------------------------------------------- 13 essay_student_association_updated
CASES["essay_student_association_updated"] = {
    "parsed": envelope(
        "ab7c89b5-19e5-4914-86d4-98625ad9c5e8", "huleedu.essay.student.association.updated.v1",
        "2025-08-01T08:32:10.903557Z", "class-management-service", "d012b1ea-9102-41d9-996f-e0f5aa61b89a",
        {
            "event": "essay.student.association.updated",
            "batch_id": BATCH_1,
            "essay_id": ESSAY_1,
            "student_id": STUDENT_ASA,
            "first_name": "Åsa",
            "last_name": "Öberg",
            "student_email": "asa.oberg@elev.skola.se",
            "association_method": "parsed",
            "confidence_score": 0.92,
            "created_by_user_id": TEACHER_ASA,
            "correlation_id": "d012b1ea-9102-41d9-996f-e0f5aa61b89a",
            "timestamp": "2025-08-01T08:32:10.890021Z",
        },
        metadata={"traceparent": TRACE_3},
    ),
    # alias event type; manual association of a student without email
    "alias_class_manual": envelope(
        "c2641462-1f3d-4100-a6f7-577ad5ee8ac3", "huleedu.class.essay.association.updated.v1",
        "2025-08-01T10:20:44.127806Z", "class-management-service", "1c1c2259-4512-46db-b1c9-4f94e90a7b46",
        {
            "event": "essay.student.association.updated",
            "batch_id": BATCH_2,
            "essay_id": ESSAY_5,
            "student_id": STUDENT_JOSE,
            "first_name": "José",
            "last_name": "Núñez García",
            "student_email": None,
            "association_method": "manual",
            "confidence_score": None,
            "created_by_user_id": TEACHER_JOSE,
            "correlation_id": "1c1c2259-4512-46db-b1c9-4f94e90a7b46",
            "timestamp": "2025-08-01T10:20:44.115320Z",
        },
        metadata=None,
    ),
    # no student matched: every nullable-required key is null; event/correlation_id/timestamp absent
    "unmatched": envelope(
        "bfb7aa77-8448-4146-8bdc-8d20effdad01", "huleedu.essay.student.association.updated.v1",
        "2025-08-01T08:32:11.250684Z", "class-management-service", "d012b1ea-9102-41d9-996f-e0f5aa61b89a",
        {
            "batch_id": BATCH_1,
            "essay_id": ESSAY_3,
            "student_id": None,
            "first_name": None,
            "last_name": None,
            "student_email": None,
            "association_method": "parsed",
            "confidence_score": None,
            "created_by_user_id": TEACHER_ASA,
        },
        metadata={},
    ),
}

# ----------------------------------------------------------------------------- an event herald does not know
CASES["_unknown"] = {
    "batch_essays_registered": envelope(
        "f6693ad2-0a7e-4660-a0db-26555905e344", "huleedu.batch.essays.registered.v1",
        "2025-08-01T08:10:02.443761Z", "batch-orchestrator-service", "2d794eac-2b42-4b6b-8f79-7aea6a45ae42",
        {
            "entity_id": BATCH_1,
            "user_id": TEACHER_ASA,
            "essay_ids": [ESSAY_1, ESSAY_2, ESSAY_3],
        },
        metadata={"traceparent": TRACE_4},
    ),
}


# ----------------------------------------------------------------------------- invalid inputs
def _invalid_files() -> dict[str, bytes]:
    added = CASES["batch_file_added"]["basic"]
    missing_event_type = copy.deepcopy(added)
    del missing_event_type["event_type"]

    payload_missing_required = copy.deepcopy(added)
    del payload_missing_required["data"]["filename"]

    payload_wrong_type = copy.deepcopy(CASES["class_created"]["basic"])
    payload_wrong_type["data"]["course_codes"] = "SV1"

    bad_uuid = copy.deepcopy(added)
    bad_uuid["event_id"] = "not-a-uuid"

    not_an_envelope = [{"event_type": "huleedu.file.batch.file.added.v1", "data": added["data"]}]

    def dumps(v) -> bytes:
        return json.dumps(v).encode("ascii")

    return {
        # a truncated binary record: invalid UTF-8, then the start of an envelope
        "not_json.bin": b"\x00\x01\xfe\xff\x93\x8bgarbage\xc3\x28" + b'{"event_id": "4b24b71c',
        "not_an_envelope.json": dumps(not_an_envelope),
        "missing_event_type.json": dumps(missing_event_type),
        "payload_missing_required.json": dumps(payload_missing_required),
        "payload_wrong_type.json": dumps(payload_wrong_type),
        "bad_uuid.json": dumps(bad_uuid),
    }


# ----------------------------------------------------------------------------- writer
def forms(env: dict) -> dict[str, bytes]:
    return {
        "dumps.json": json.dumps(env).encode("ascii"),
        "compact.json": json.dumps(env, separators=(",", ":"), ensure_ascii=False).encode("utf-8"),
    }


def all_files() -> dict[Path, bytes]:
    files: dict[Path, bytes] = {}
    for folder, cases in CASES.items():
        for case, env in cases.items():
            for suffix, body in forms(env).items():
                files[OUT / folder / f"{case}.{suffix}"] = body
    for name, body in _invalid_files().items():
        files[OUT / "_invalid" / name] = body
    return files


def main(argv: list[str]) -> int:
    check = "--check" in argv[1:]
    stale = []
    for path, body in sorted(all_files().items()):
        if check:
            if not path.is_file() or path.read_bytes() != body:
                stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_bytes() != body:
            path.write_bytes(body)
            print(f"wrote {path.relative_to(OUT.parent.parent.parent)}")
    if check and stale:
        for path in stale:
            print(f"stale: {path}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
