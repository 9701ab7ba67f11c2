//! The model: one declaration per field (name, setter, type, default, environment variables,
//! docs, whether ZenML's `otel` flavor has it and whether it belongs to the transport), from
//! which `declare.rs` makes the struct, its `Default` and `Debug`, the setters, the sources'
//! merge and the environment overlay, and each field's rustdoc line naming its variables; the
//! tables of docs/configuration.md and the Python helper's key list are checked against it (tests below, python/tests/test_shared_constants.py).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use super::env;
use super::kinds::{Compression, OnFull, Protocol};
use super::validate::{MAX_MILLIS, MAX_QUEUE_SIZE};

config_fields! {
    /// `service.name` of every exported resource. Default `"zenml"`. Without
    /// `OTEL_SERVICE_NAME`, a `service.name` among the resource attributes
    /// (`OTEL_RESOURCE_ATTRIBUTES`) gives it.
    service_name, with_service_name: String = "zenml".to_owned();
        env ["OTEL_SERVICE_NAME"] => env::text;
        flavor true, transport false;
    /// `service.version` of every exported resource. Default `"1.0.0"`.
    service_version, with_service_version: String = "1.0.0".to_owned();
        env [];
        flavor true, transport false;
    /// `deployment.environment` of every exported resource. Default `"production"`.
    deployment_environment, with_deployment_environment: String = "production".to_owned();
        env [];
        flavor false, transport false;
    /// The collector's endpoint; see the endpoint rules per protocol (docs/configuration.md). `None`: the
    /// `OTEL_EXPORTER_OTLP_[LOGS_]ENDPOINT` variables, then `http://localhost:4318/v1/logs`
    /// (HTTP) or `http://localhost:4317` (gRPC).
    endpoint, with_endpoint: Option<String> = None;
        env ["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"];
        flavor true, transport true;
    /// Headers (gRPC metadata) sent with every export request. Never printed.
    headers, with_headers: HashMap<String, String> = HashMap::new();
        env ["OTEL_EXPORTER_OTLP_LOGS_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"] => env::headers;
        flavor true, transport true, debug redacted, serde(deserialize_with = "super::sources::headers_json");
    /// gRPC only: a scheme-less endpoint (`collector:4317`) is reached in plaintext when `true`,
    /// over TLS when `false` (as `OTEL_EXPORTER_OTLP_INSECURE`). An explicit `https://` is
    /// always TLS with certificate verification, and for OTLP/HTTP the URL's scheme alone
    /// decides: this flag never turns verification off.
    insecure, with_insecure: bool = false;
        env ["OTEL_EXPORTER_OTLP_LOGS_INSECURE", "OTEL_EXPORTER_OTLP_INSECURE"] => env::boolean;
        flavor false, transport true;
    /// Most records waiting for export, all runs together; beyond it records are dropped and
    /// counted. Default 2048.
    max_queue_size, with_max_queue_size: usize = 2048;
        env ["ZENML_LOGS_OTEL_MAX_QUEUE_SIZE", "OTEL_BLRP_MAX_QUEUE_SIZE"] => env::at_most(MAX_QUEUE_SIZE);
        flavor true, transport false;
    /// Longest a record waits before its batch is exported, in milliseconds. Default 1000.
    schedule_delay_millis, with_schedule_delay_millis: u64 = 1000;
        env ["ZENML_LOGS_OTEL_SCHEDULE_DELAY_MILLIS", "OTEL_BLRP_SCHEDULE_DELAY"] => env::at_most(MAX_MILLIS);
        flavor true, transport false;
    /// Most records per export request. Default 512; at most `max_queue_size`.
    max_export_batch_size, with_max_export_batch_size: usize = 512;
        env ["ZENML_LOGS_OTEL_MAX_EXPORT_BATCH_SIZE", "OTEL_BLRP_MAX_EXPORT_BATCH_SIZE"] => env::at_most(MAX_QUEUE_SIZE);
        flavor true, transport false;
    /// Most bytes per export request (the encoded request, before compression). Default
    /// 4,000,000: within the OpenTelemetry Collector's default limits (4 MiB per gRPC message,
    /// 20 MiB per HTTP body). A record too large for any request is truncated to fit and
    /// counted in `stats().truncated`. At least 16384.
    max_export_batch_bytes, with_max_export_batch_bytes: usize = 4_000_000;
        env ["ZENML_OTEL_MAX_EXPORT_BATCH_BYTES"] => env::number;
        flavor false, transport false;
    /// About the most bytes the queued records may hold, all runs together (their strings plus
    /// a fixed overhead each), counted until they are sent or counted, so records in flight
    /// are inside the bound; beyond it records are handled as when the queue is full
    /// (`on_full`). One record may always fill an empty queue. Default 67108864 (64 MiB); at
    /// least `max_export_batch_bytes`.
    max_queue_bytes, with_max_queue_bytes: usize = 64 * 1024 * 1024;
        env ["ZENML_OTEL_MAX_QUEUE_BYTES"] => env::number;
        flavor false, transport false;
    /// Longest string attribute value of an event's fields, in characters; longer ones are cut
    /// (`OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT`). Default `None`: no limit, as the spec.
    attribute_value_length_limit, with_attribute_value_length_limit: Option<usize> = None;
        env ["OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"] => env::some_number;
        flavor false, transport false;
    /// Most of an event's fields kept as attributes; the rest are left out and counted in the
    /// record's `dropped_attributes_count` (`OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT`). Default 128,
    /// as the spec. Code location and run attributes are not counted.
    attribute_count_limit, with_attribute_count_limit: usize = 128;
        env ["OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT"] => env::number;
        flavor false, transport false;
    /// How long a request that failed with a retryable error (no connection, timeouts, HTTP
    /// 429/502/503/504, gRPC UNAVAILABLE and friends) is sent again, with backoff from 1 s to
    /// 30 s, before it counts as failed; meanwhile newer records wait in the queue. Default
    /// 300000 (5 minutes, as the Collector's `retry_on_failure`); 1 to 86400000.
    max_retry_elapsed_millis, with_max_retry_elapsed_millis: u64 = 300_000;
        env ["ZENML_OTEL_MAX_RETRY_ELAPSED_MILLIS"] => env::at_most(MAX_MILLIS);
        flavor false, transport false;
    /// Transport and encoding. Default `http/protobuf`.
    protocol, with_protocol: Protocol = Protocol::HttpProtobuf;
        env ["OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"] => env::parsed;
        flavor false, transport true;
    /// Request body compression. Default `none`.
    compression, with_compression: Compression = Compression::None;
        env ["OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"] => env::parsed;
        flavor true, transport true;
    /// Bound on one export including the exporter's retries, and on `shutdown()`, in
    /// milliseconds. Default 10000 (the OTLP exporter default).
    export_timeout_millis, with_export_timeout_millis: u64 = 10_000;
        env [
            "ZENML_LOGS_OTEL_EXPORT_TIMEOUT_MILLIS",
            "OTEL_BLRP_EXPORT_TIMEOUT",
            "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ] => env::at_most(MAX_MILLIS);
        flavor true, transport true;
    /// PEM file of the CA certificate(s) that verify the collector, instead of the default
    /// roots (the system's; over gRPC the system's and webpki's).
    certificate_file, with_certificate_file: Option<PathBuf> = None;
        env ["OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE"] => env::path;
        flavor true, transport true;
    /// PEM file of the client certificate (chain) for mutual TLS; needs `client_key_file`.
    client_certificate_file, with_client_certificate_file: Option<PathBuf> = None;
        env ["OTEL_EXPORTER_OTLP_LOGS_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"] => env::path;
        flavor true, transport true;
    /// PEM file of the client's private key for mutual TLS; needs `client_certificate_file`.
    client_key_file, with_client_key_file: Option<PathBuf> = None;
        env ["OTEL_EXPORTER_OTLP_LOGS_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY"] => env::path;
        flavor true, transport true;
    /// Extra resource attributes (as `OTEL_RESOURCE_ATTRIBUTES`). The service attributes from
    /// the fields above and a run's `zenml.*` attributes take precedence over these.
    resource_attributes, with_resource_attributes: HashMap<String, String> = HashMap::new();
        env ["OTEL_RESOURCE_ATTRIBUTES"] => env::attributes;
        flavor false, transport false;
    /// Span fields, beyond the `zenml.*` ones, copied onto every record logged inside the span
    /// as attributes (values recorded later included; an event's own field wins over the
    /// innermost span, which wins over outer spans). Default empty: nothing copied, at no cost.
    span_fields, with_span_fields: Vec<String> = Vec::new();
        env ["ZENML_OTEL_SPAN_FIELDS"] => env::names;
        flavor false, transport false;
    /// What logging does when the queue is full: `"drop"` (default) or `"block"`.
    on_full, with_on_full: OnFull = OnFull::Drop;
        env [];
        flavor false, transport false;
    /// With `on_full = "block"`, the longest an emitting thread waits for room before the
    /// record is dropped and counted. Default 5000.
    max_block_millis, with_max_block_millis: u64 = 5000;
        env [];
        flavor false, transport false;
    /// A directory for the crash-safe spool (`ZENML_OTEL_SPOOL_DIR`): every record is written
    /// there before the `tracing` call returns, kept until a collector acknowledged it, and
    /// sent by the next layer started on the directory if this process dies first. Created if
    /// missing; one live process (and layer) per directory. Default `None`: no spool.
    spool_dir, with_spool_dir: Option<PathBuf> = None;
        env ["ZENML_OTEL_SPOOL_DIR"] => env::path;
        flavor false, transport false;
    /// Most bytes the spool's files take (`ZENML_OTEL_MAX_SPOOL_BYTES`); beyond it records are
    /// dropped and counted, as on a full queue. Default 268435456 (256 MiB); at least 8 MiB.
    max_spool_bytes, with_max_spool_bytes: u64 = 256 * 1024 * 1024;
        env ["ZENML_OTEL_MAX_SPOOL_BYTES"] => env::number;
        flavor false, transport false;
    /// How often the spool's new records are written through to the disk (`fdatasync`), so
    /// that a machine crash or power loss loses at most this long's records
    /// (`ZENML_OTEL_SPOOL_SYNC_MILLIS`). Default 0: never; the kernel's page cache then keeps
    /// what a killed process wrote, not what a crashed machine did.
    spool_sync_millis, with_spool_sync_millis: u64 = 0;
        env ["ZENML_OTEL_SPOOL_SYNC_MILLIS"] => env::at_most(MAX_MILLIS);
        flavor false, transport false;
    /// How often the layer exports OTLP metrics about itself to the logs' collector (the
    /// `otel.sdk.*` self-observability metrics of the semantic conventions and the crate's own
    /// `zenml_otel.*`; see docs/metrics.md), in milliseconds, and once more at shutdown
    /// with the final counts (`ZENML_OTEL_METRICS_INTERVAL_MILLIS`). Default 0: off.
    metrics_interval_millis, with_metrics_interval_millis: u64 = 0;
        env ["ZENML_OTEL_METRICS_INTERVAL_MILLIS"] => env::at_most(MAX_MILLIS);
        flavor false, transport false;
    /// Where metrics go, used as is: for OTLP/HTTP the full URL, for gRPC the endpoint
    /// (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`). `None`: derived from the logs' endpoint (the
    /// endpoint rules of docs/configuration.md). Read only with `metrics_interval_millis` set.
    metrics_endpoint, with_metrics_endpoint: Option<String> = None;
        env ["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"] => env::some_text;
        flavor false, transport true;
    /// Headers (gRPC metadata) of metrics requests, instead of `headers`
    /// (`OTEL_EXPORTER_OTLP_METRICS_HEADERS`). Empty: the logs' `headers`. Never printed.
    metrics_headers, with_metrics_headers: HashMap<String, String> = HashMap::new();
        env ["OTEL_EXPORTER_OTLP_METRICS_HEADERS"] => env::headers;
        flavor false, transport true, debug redacted, serde(deserialize_with = "super::sources::headers_json");
}

/// Header names with their values hidden: values are usually credentials.
pub(super) struct Redacted<'a>(&'a HashMap<String, String>);

fn redacted(headers: &HashMap<String, String>) -> Redacted<'_> {
    Redacted(headers)
}

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|name| (name, "<redacted>")))
            .finish()
    }
}

/// What the documentation checks read: the fields as docs/configuration.md describes them.
#[cfg(test)]
mod docs {
    use super::*;

    /// A field as the documentation describes it.
    pub(in crate::config) struct Field {
        pub(in crate::config) name: &'static str,
        pub(in crate::config) setter: &'static str,
        /// Its variables, first match wins; the endpoint's are read by the endpoint rules.
        pub(in crate::config) env: &'static [&'static str],
        /// A key of ZenML's Python `otel` flavor.
        pub(in crate::config) flavor: bool,
        /// Closed by a handover: never from the environment when one is present.
        pub(in crate::config) transport: bool,
        /// The configuration table's "default" cell for this field of `config`.
        pub(in crate::config) default: fn(&OtelLogStoreConfig) -> String,
    }

    /// A value as the configuration table writes a default.
    pub(in crate::config) trait Shown {
        fn shown(&self) -> String;
    }

    impl Shown for String {
        fn shown(&self) -> String {
            format!("`{self:?}`")
        }
    }

    macro_rules! shown_as_code {
        ($($type:ty),*) => {
            $(impl Shown for $type {
                fn shown(&self) -> String {
                    format!("`{self}`")
                }
            })*
        };
    }
    shown_as_code!(bool, usize, u64);

    impl Shown for Protocol {
        fn shown(&self) -> String {
            format!("`\"{}\"`", self.as_str())
        }
    }

    impl Shown for Compression {
        fn shown(&self) -> String {
            format!("`\"{}\"`", self.as_str())
        }
    }

    impl Shown for OnFull {
        fn shown(&self) -> String {
            match self {
                OnFull::Drop => "`\"drop\"`".to_owned(),
                OnFull::Block => "`\"block\"`".to_owned(),
            }
        }
    }

    impl<T: Shown> Shown for Option<T> {
        fn shown(&self) -> String {
            self.as_ref().map_or_else(|| "none".to_owned(), T::shown)
        }
    }

    impl<K, V> Shown for HashMap<K, V> {
        fn shown(&self) -> String {
            if self.is_empty() { "empty" } else { "a map" }.to_owned()
        }
    }

    impl<T> Shown for Vec<T> {
        fn shown(&self) -> String {
            if self.is_empty() { "empty" } else { "a list" }.to_owned()
        }
    }

    impl Shown for PathBuf {
        fn shown(&self) -> String {
            format!("`{}`", self.display())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::docs::Field;
    use super::*;

    /// The rows of the docs/configuration.md table under `heading` whose first column names fields: (field
    /// names, the other cells).
    fn readme_rows(heading: &str) -> Vec<(Vec<String>, Vec<String>)> {
        let readme = include_str!("../../docs/configuration.md");
        let start = readme
            .find(heading)
            .unwrap_or_else(|| panic!("docs/configuration.md has no `{heading}`"));
        let rows = readme[start..]
            .lines()
            .skip_while(|line| !line.starts_with('|'))
            .take_while(|line| line.starts_with('|'))
            .skip(2);
        rows.map(|row| {
            let cells: Vec<String> = row
                .trim_matches('|')
                .split(" | ")
                .map(|cell| cell.trim().to_owned())
                .collect();
            let names = cells[0]
                .split(", ")
                .map(|name| name.trim_matches('`').to_owned())
                .collect();
            (names, cells[1..].to_vec())
        })
        .collect()
    }

    fn field(name: &str) -> &'static Field {
        FIELDS
            .iter()
            .find(|field| field.name == name)
            .unwrap_or_else(|| panic!("docs/configuration.md names `{name}`, which is not a field"))
    }

    #[test]
    fn the_configuration_table_lists_every_field_with_its_default() {
        let default = OtelLogStoreConfig::default();
        let mut listed = Vec::new();
        for (names, cells) in readme_rows("## The fields") {
            for name in names {
                let shown = (field(&name).default)(&default);
                assert!(
                    cells[0].starts_with(&shown),
                    "docs/configuration.md: the default of `{name}` is {shown}, not {}",
                    cells[0]
                );
                listed.push(name);
            }
        }
        let declared: Vec<&str> = FIELDS.iter().map(|field| field.name).collect();
        let mut sorted = listed.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            listed.len(),
            "docs/configuration.md lists a field twice"
        );
        let mut expected = declared.clone();
        expected.sort();
        assert_eq!(
            sorted, expected,
            "docs/configuration.md's configuration table and the fields differ"
        );
    }

    #[test]
    fn the_variables_table_names_each_fields_variables_in_order() {
        let mut listed = Vec::new();
        for (names, cells) in readme_rows("## Where values come from") {
            let [name] = names.as_slice() else {
                panic!("docs/configuration.md: one field per row of the variables table: {names:?}")
            };
            // Every `UPPER_CASE` name in the row, in order.
            let variables: Vec<&str> = cells[0]
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|word| {
                    word.len() > 1 && word.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                })
                .collect();
            assert_eq!(
                variables,
                field(name).env,
                "docs/configuration.md: the variables of `{name}`"
            );
            listed.push(name.clone());
        }
        let with_variables: Vec<String> = FIELDS
            .iter()
            .filter(|field| !field.env.is_empty())
            .map(|field| field.name.to_owned())
            .collect();
        listed.sort();
        let mut expected = with_variables;
        expected.sort();
        assert_eq!(
            listed, expected,
            "docs/configuration.md: rows of the variables table"
        );
    }

    #[test]
    fn a_handover_closes_the_transport_group() {
        let transport: Vec<&str> = FIELDS
            .iter()
            .filter(|field| field.transport)
            .map(|field| field.name)
            .collect();
        assert_eq!(
            transport,
            [
                "endpoint",
                "headers",
                "insecure",
                "protocol",
                "compression",
                "export_timeout_millis",
                "certificate_file",
                "client_certificate_file",
                "client_key_file",
                "metrics_endpoint",
                "metrics_headers",
            ]
        );
    }

    #[test]
    fn the_flavor_keys_are_the_python_helpers() {
        // `CONFIG_KEYS = ("service_name", …)` in the helper (what a step hands over).
        let helper = include_str!("../../python/src/zenml_otel/_zenml.py");
        let start = helper
            .find("CONFIG_KEYS = (")
            .expect("CONFIG_KEYS in _zenml.py");
        let tuple = &helper[start..start + helper[start..].find(')').expect("its end")];
        let mut python: Vec<&str> = tuple.split('"').skip(1).step_by(2).collect();
        let mut ours: Vec<&str> = FIELDS
            .iter()
            .filter(|field| field.flavor)
            .map(|field| field.name)
            .collect();
        python.sort_unstable();
        ours.sort_unstable();
        assert_eq!(python, ours, "python/src/zenml_otel/_zenml.py CONFIG_KEYS");
    }

    #[test]
    fn every_setter_is_named_after_its_field() {
        for field in FIELDS {
            assert_eq!(field.setter, format!("with_{}", field.name));
        }
    }

    #[test]
    fn a_variable_belongs_to_one_field() {
        let mut all: Vec<&str> = FIELDS.iter().flat_map(|field| field.env).copied().collect();
        let count = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), count);
    }
}
