//! The record writer and the encoder against the reference: opentelemetry-proto's conversion
//! of the same records (what opentelemetry-otlp sends), request by request, byte for byte.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{SpanId, TraceFlags, TraceId};
use opentelemetry::{InstrumentationScope, Key, KeyValue};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::logs::tonic::group_logs_by_resource_and_scope;
use opentelemetry_sdk::logs::{LogBatch, SdkLogRecord, SdkLoggerProvider};
use opentelemetry_sdk::Resource;
use proptest::prelude::*;
use prost::Message as _;

use super::Encoder;
use crate::batch::QueuedRecord;
use crate::record::{with_scratch, RecordWriter, DEFAULT_SCOPE};
use crate::span_context::{Resolved, Run};

const SEVERITIES: [Severity; 24] = [
    Severity::Trace,
    Severity::Trace2,
    Severity::Trace3,
    Severity::Trace4,
    Severity::Debug,
    Severity::Debug2,
    Severity::Debug3,
    Severity::Debug4,
    Severity::Info,
    Severity::Info2,
    Severity::Info3,
    Severity::Info4,
    Severity::Warn,
    Severity::Warn2,
    Severity::Warn3,
    Severity::Warn4,
    Severity::Error,
    Severity::Error2,
    Severity::Error3,
    Severity::Error4,
    Severity::Fatal,
    Severity::Fatal2,
    Severity::Fatal3,
    Severity::Fatal4,
];

/// How a record is built; kept apart from the record so failures print readably.
#[derive(Debug, Clone)]
struct Spec {
    run: usize,
    timestamp: Option<u64>,
    observed: u64,
    severity: Option<usize>,
    severity_text: Option<&'static str>,
    body: Option<AnyValue>,
    attributes: Vec<(String, AnyValue)>,
    target: Option<String>,
    trace: Option<(u128, u64, Option<u8>)>,
    event_name: Option<&'static str>,
    /// The record's `dropped_attributes_count`.
    dropped: u32,
}

fn scalar() -> impl Strategy<Value = AnyValue> {
    prop_oneof![
        any::<String>().prop_map(AnyValue::from),
        any::<i64>().prop_map(AnyValue::Int),
        any::<f64>().prop_map(AnyValue::Double),
        any::<bool>().prop_map(AnyValue::Boolean),
        Just(AnyValue::from("")),
    ]
}

fn value() -> impl Strategy<Value = AnyValue> {
    prop_oneof![
        4 => scalar(),
        1 => proptest::collection::vec(any::<u8>(), 0..40)
            .prop_map(|bytes| AnyValue::Bytes(Box::new(bytes))),
        1 => proptest::collection::vec(scalar(), 0..4)
            .prop_map(|values| AnyValue::ListAny(Box::new(values))),
        1 => proptest::collection::vec(("[a-z.]{0,8}", scalar()), 0..3).prop_map(|entries| {
            AnyValue::Map(Box::new(
                entries.into_iter().map(|(k, v)| (Key::from(k), v)).collect::<HashMap<_, _>>(),
            ))
        }),
    ]
}

fn spec(runs: usize) -> impl Strategy<Value = Spec> {
    (
        (
            0..runs,
            proptest::option::of(any::<u64>()),
            any::<u64>(),
            proptest::option::of(0..24usize),
            proptest::option::of(prop_oneof![Just("INFO"), Just(""), Just("WARN")]),
        ),
        (
            proptest::option::of(value()),
            proptest::collection::vec(("[a-z._]{0,12}", value()), 0..6),
            proptest::option::of(prop_oneof![
                Just(String::new()),
                Just("app".to_owned()),
                Just("app::model".to_owned()),
                "[a-z:]{1,10}",
            ]),
            proptest::option::of((
                any::<u128>(),
                any::<u64>(),
                proptest::option::of(any::<u8>()),
            )),
            proptest::option::of(prop_oneof![Just("step.started"), Just("")]),
            prop_oneof![3 => Just(0u32), 1 => 1u32..200],
        ),
    )
        .prop_map(
            |(
                (run, timestamp, observed, severity, severity_text),
                (body, attributes, target, trace, event_name, dropped),
            )| Spec {
                run,
                timestamp,
                observed,
                severity,
                severity_text,
                body,
                attributes,
                target,
                trace,
                event_name,
                dropped,
            },
        )
}

fn resource(i: usize) -> Resource {
    let attributes = [
        KeyValue::new("service.name", "zenml"),
        KeyValue::new("zenml.pipeline_run_id", format!("run-{i}")),
        KeyValue::new("zenml.step_id", i as i64),
        KeyValue::new("zenml.flag", i.is_multiple_of(2)),
        KeyValue::new("zenml.ratio", 0.5 + i as f64),
    ];
    if i == 2 {
        Resource::builder_empty()
            .with_schema_url(attributes, "https://opentelemetry.io/schemas/1.27.0")
            .build()
    } else {
        Resource::builder_empty()
            .with_attributes(attributes)
            .build()
    }
}

/// Contexts: runs whose records carry no attributes of their context.
fn plain(runs: &[Arc<Run>]) -> Vec<Arc<Resolved>> {
    let context = |run: &Arc<Run>| Arc::new(Resolved::with_attributes(run.clone(), Vec::new()));
    runs.iter().map(context).collect()
}

/// A record as the layer queues it (written by `RecordWriter`) and, built from the same spec,
/// as the SDK holds it (the reference's input).
struct Built {
    queued: QueuedRecord,
    sdk: SdkLogRecord,
    dropped: u32,
}

/// `spec.run` picks the record's context.
fn build(specs: &[Spec], contexts: &[Arc<Resolved>]) -> Vec<Built> {
    specs
        .iter()
        .map(|spec| Built {
            queued: QueuedRecord::new(Arc::clone(&contexts[spec.run]), written(spec)),
            sdk: sdk_record(spec),
            dropped: spec.dropped,
        })
        .collect()
}

fn written(spec: &Spec) -> crate::record::EncodedRecord {
    with_scratch(|scratch| {
        let mut record = RecordWriter::new(scratch, spec.timestamp.unwrap_or(0), spec.observed);
        record.severity(
            spec.severity.map_or(0, |s| SEVERITIES[s] as i32),
            spec.severity_text.unwrap_or_default(),
        );
        if let Some(body) = &spec.body {
            record.body(body);
        }
        for (key, value) in &spec.attributes {
            record.attribute(key, value);
        }
        if let Some(target) = &spec.target {
            record.scope(Cow::Owned(target.clone()));
        }
        if let Some((trace_id, span_id, flags)) = spec.trace {
            record.trace(
                flags.unwrap_or(0),
                trace_id.to_be_bytes(),
                span_id.to_be_bytes(),
            );
        }
        if let Some(name) = spec.event_name {
            record.event_name(name);
        }
        record.finish(spec.dropped)
    })
}

fn sdk_record(spec: &Spec) -> SdkLogRecord {
    let provider = SdkLoggerProvider::builder().build();
    let mut record = provider.logger("test").create_log_record();
    if let Some(t) = spec.timestamp {
        record.set_timestamp(UNIX_EPOCH + Duration::from_nanos(t));
    }
    record.set_observed_timestamp(UNIX_EPOCH + Duration::from_nanos(spec.observed));
    if let Some(s) = spec.severity {
        record.set_severity_number(SEVERITIES[s]);
    }
    if let Some(text) = spec.severity_text {
        record.set_severity_text(text);
    }
    if let Some(body) = &spec.body {
        record.set_body(body.clone());
    }
    for (key, value) in &spec.attributes {
        record.add_attribute(Key::from(key.clone()), value.clone());
    }
    if let Some(target) = &spec.target {
        record.set_target(Cow::Owned(target.clone()));
    }
    if let Some((trace_id, span_id, flags)) = spec.trace {
        record.set_trace_context(
            TraceId::from(trace_id),
            SpanId::from(span_id),
            flags.map(TraceFlags::new),
        );
    }
    if let Some(name) = spec.event_name {
        record.set_event_name(name);
    }
    record
}

/// The queued records, for the encoder, and the SDK's, for the reference, in the same order.
fn split(built: Vec<Built>) -> (Vec<QueuedRecord>, Vec<Built>) {
    let records = built
        .iter()
        .map(|b| QueuedRecord::new(Arc::clone(&b.queued.context), b.queued.record.clone()))
        .collect();
    (records, built)
}

fn ours(records: &mut [QueuedRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    Encoder::default().encode(records, &mut out);
    out
}

/// What opentelemetry-otlp would send, one `ResourceLogs` per run in the order the runs come,
/// scopes in order of first appearance (it groups them in a `HashMap`), each scope's records in
/// their order.
fn reference(records: &[Built]) -> Vec<u8> {
    let scope = InstrumentationScope::builder(DEFAULT_SCOPE).build();
    let mut resource_logs = Vec::new();
    let mut rest = records;
    while !rest.is_empty() {
        let first_run = rest[0].queued.run();
        let n = rest
            .iter()
            .take_while(|b| Arc::ptr_eq(b.queued.run(), first_run))
            .count();
        let (group, tail) = rest.split_at(n);
        // The context's attributes, as opentelemetry-otlp would get them: on the record.
        let with_context: Vec<SdkLogRecord> = group
            .iter()
            .map(|b| {
                let mut record = b.sdk.clone();
                for (key, value) in b.queued.context.attributes() {
                    record.add_attribute(key.clone(), value.clone());
                }
                record
            })
            .collect();
        let batch: Vec<(&SdkLogRecord, &InstrumentationScope)> =
            with_context.iter().map(|r| (r, &scope)).collect();
        let resource = ResourceAttributesWithSchema::from(&first_run.resource);
        let mut converted = group_logs_by_resource_and_scope(&LogBatch::new(&batch), &resource);
        let scope_of = |b: &Built| {
            b.sdk
                .target()
                .map_or(DEFAULT_SCOPE.to_owned(), |t| t.to_string())
        };
        let mut order: Vec<String> = Vec::new();
        for b in group {
            if !order.contains(&scope_of(b)) {
                order.push(scope_of(b));
            }
        }
        for logs in &mut converted {
            logs.scope_logs.sort_by_key(|scope_logs| {
                let name = &scope_logs.scope.as_ref().unwrap().name;
                order.iter().position(|n| n == name).unwrap()
            });
            // opentelemetry-proto writes no dropped count: each scope's records in their order.
            for scope_logs in &mut logs.scope_logs {
                let name = scope_logs.scope.as_ref().unwrap().name.clone();
                let mut of_scope = group.iter().filter(|b| scope_of(b) == name);
                for converted in &mut scope_logs.log_records {
                    converted.dropped_attributes_count = of_scope.next().unwrap().dropped;
                }
            }
        }
        resource_logs.extend(converted);
        rest = tail;
    }
    ExportLogsServiceRequest { resource_logs }.encode_to_vec()
}

fn sorted_by_run(mut built: Vec<Built>) -> Vec<Built> {
    built.sort_by_key(|b| Arc::as_ptr(b.queued.run()) as usize);
    built
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn same_bytes_as_opentelemetry_proto(
        specs in proptest::collection::vec(spec(8), 1..40),
        context_attributes in proptest::collection::vec(
            proptest::collection::vec(("zenml\\.[a-z._]{0,10}", value()), 0..4),
            8,
        ),
    ) {
        // Two contexts per run: spans of one run may carry different `zenml.*` attributes.
        let runs: Vec<Arc<Run>> = (0..4).map(|i| Arc::new(Run::new(resource(i), None))).collect();
        let contexts: Vec<Arc<Resolved>> = context_attributes
            .into_iter()
            .enumerate()
            .map(|(i, attributes)| {
                let attributes = attributes.into_iter().map(|(k, v)| (Key::from(k), v)).collect();
                Arc::new(Resolved::with_attributes(runs[i / 2].clone(), attributes))
            })
            .collect();
        let (mut records, built) = split(sorted_by_run(build(&specs, &contexts)));
        let encoded = ours(&mut records);
        prop_assert_eq!(records.len(), specs.len());
        prop_assert_eq!(encoded, reference(&built));
    }
}

#[test]
fn records_of_one_scope_keep_their_order_across_scopes() {
    let runs = vec![Arc::new(Run::new(resource(0), None))];
    let specs: Vec<Spec> = (0..9)
        .map(|i| Spec {
            run: 0,
            timestamp: Some(i),
            observed: i,
            severity: None,
            severity_text: None,
            body: Some(AnyValue::Int(i as i64)),
            attributes: vec![],
            target: Some(["a", "b", "c"][i as usize % 3].to_owned()),
            trace: None,
            event_name: None,
            dropped: 0,
        })
        .collect();
    let (mut records, _) = split(build(&specs, &plain(&runs)));
    let request = ExportLogsServiceRequest::decode(ours(&mut records).as_slice()).unwrap();
    assert_eq!(request.resource_logs.len(), 1);
    let scopes: Vec<(String, Vec<u64>)> = request.resource_logs[0]
        .scope_logs
        .iter()
        .map(|s| {
            (
                s.scope.as_ref().unwrap().name.clone(),
                s.log_records.iter().map(|r| r.time_unix_nano).collect(),
            )
        })
        .collect();
    assert_eq!(
        scopes,
        vec![
            ("a".to_owned(), vec![0, 3, 6]),
            ("b".to_owned(), vec![1, 4, 7]),
            ("c".to_owned(), vec![2, 5, 8]),
        ]
    );
}

#[test]
fn one_request_holds_every_run_once_and_the_resource_is_encoded_once() {
    let runs: Vec<Arc<Run>> = (0..3)
        .map(|i| Arc::new(Run::new(resource(i), None)))
        .collect();
    let specs: Vec<Spec> = (0..30)
        .map(|i| Spec {
            run: i % 3,
            timestamp: None,
            observed: 1,
            severity: Some(8),
            severity_text: Some("INFO"),
            body: Some(AnyValue::from(format!("line {i}"))),
            attributes: vec![("rows".to_owned(), AnyValue::Int(i as i64))],
            target: Some("app".to_owned()),
            trace: None,
            event_name: None,
            dropped: 0,
        })
        .collect();
    let (mut records, _) = split(sorted_by_run(build(&specs, &plain(&runs))));
    let request = ExportLogsServiceRequest::decode(ours(&mut records).as_slice()).unwrap();
    assert_eq!(request.resource_logs.len(), 3);
    for logs in &request.resource_logs {
        assert_eq!(logs.scope_logs[0].log_records.len(), 10);
    }
    assert!(runs.iter().all(|run| run.is_encoded()));
}

#[test]
#[cfg(feature = "http-json")]
fn json_writes_non_finite_doubles_as_strings_and_keeps_the_rest() {
    let runs = vec![Arc::new(Run::new(resource(0), None))];
    let list = AnyValue::ListAny(Box::new(vec![
        AnyValue::Double(f64::NEG_INFINITY),
        AnyValue::Double(0.25),
    ]));
    let map = AnyValue::Map(Box::new(
        [(Key::from("inner"), AnyValue::Double(f64::NAN))]
            .into_iter()
            .collect(),
    ));
    let spec = Spec {
        run: 0,
        timestamp: Some(1),
        observed: 1,
        severity: None,
        severity_text: None,
        body: Some(AnyValue::Double(f64::INFINITY)),
        attributes: vec![
            ("nan".to_owned(), AnyValue::Double(f64::NAN)),
            ("finite".to_owned(), AnyValue::Double(1.5)),
            ("list".to_owned(), list),
            ("map".to_owned(), map),
        ],
        target: None,
        trace: None,
        event_name: None,
        dropped: 0,
    };
    let (mut records, _) = split(build(&[spec], &plain(&runs)));
    let json: serde_json::Value =
        serde_json::from_slice(&crate::otlp::json::to_json(&ours(&mut records)).unwrap()).unwrap();
    let record = &json["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
    assert_eq!(
        record["body"],
        serde_json::json!({"stringValue": "Infinity"})
    );
    let attributes = record["attributes"].as_array().unwrap();
    let value = |key: &str| {
        attributes
            .iter()
            .find(|kv| kv["key"] == key)
            .map(|kv| kv["value"].clone())
            .unwrap()
    };
    assert_eq!(value("nan"), serde_json::json!({"stringValue": "NaN"}));
    assert_eq!(value("finite"), serde_json::json!({"doubleValue": 1.5}));
    assert_eq!(
        value("list"),
        serde_json::json!({"arrayValue": {"values": [
            {"stringValue": "-Infinity"}, {"doubleValue": 0.25}
        ]}})
    );
    assert_eq!(
        value("map")["kvlistValue"]["values"][0]["value"],
        serde_json::json!({"stringValue": "NaN"})
    );
}
