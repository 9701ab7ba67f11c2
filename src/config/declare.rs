//! The macro that turns the field table (`model.rs`) into everything that lists the fields:
//! the public struct, its `Default` and redacting `Debug`, the per-field setters, the partial
//! configuration each source yields (`Given`) with its merge, the environment overlay, and the
//! table the documentation is checked against, and the rustdoc line of each field naming its
//! environment variables. A field is added in one place, the table.

/// `$debug`, or `&self.$field` when the table gives no debug view.
macro_rules! debug_view {
    ($value:expr, ) => {
        $value
    };
    ($value:expr, $show:path) => {
        &$show($value)
    };
}

/// The line of a field's rustdoc that names its environment variables, made from the same
/// list the environment overlay reads (`env [...]`), so the two cannot disagree.
macro_rules! env_doc {
    ([], $transport:tt) => {
        "\n\nNo environment variable sets it."
    };
    ([$first:literal $(, $rest:literal)* $(,)?], true) => {
        concat!(
            "\n\nEnvironment: `", $first, "`" $(, ", else `", $rest, "`")*,
            " (the first one set and not blank), when neither the program nor a handed-over ",
            "configuration gives it. A handed-over configuration closes this field: under a ",
            "handover it never comes from the environment."
        )
    };
    ([$first:literal $(, $rest:literal)* $(,)?], false) => {
        concat!(
            "\n\nEnvironment: `", $first, "`" $(, ", else `", $rest, "`")*,
            " (the first one set and not blank), when neither the program nor a handed-over ",
            "configuration gives it."
        )
    };
}

/// One entry per field:
///
/// ```text
/// /// rustdoc of the public field
/// name, with_name: Type = default;
///     env ["VARIABLE", …] => parser;   // `=> parser` left out: read elsewhere, or no variable
///     flavor bool, transport bool [, debug view] [, serde(attributes of `Given`'s field)];
/// ```
///
/// `flavor`: a key of ZenML's Python `otel` flavor (checked against the helper's list);
/// `transport`: where and how requests go, which a handed-over configuration closes.
macro_rules! config_fields {
    ($(
        $(#[doc = $doc:literal])*
        $field:ident, $setter:ident: $ty:ty = $default:expr;
            env $vars:tt $(=> $parse:expr)?;
            flavor $flavor:literal, transport $transport:tt
            $(, debug $show:path)? $(, serde($($serde:tt)*))?;
    )*) => {
        /// Configuration of the OpenTelemetry log store, with the field names and defaults of
        /// ZenML's `otel` log-store flavor.
        ///
        /// Deserializes from the flavor's JSON (unknown keys are rejected, `null` is unset);
        /// `headers` may be a map or a string holding a JSON object, as ZenML's CLI passes it
        /// (`--headers='{"Authorization":"Bearer token123"}'`).
        ///
        /// Where values come from, first match wins: the program's explicit configuration;
        /// then the configuration a ZenML step handed over ([`handover::LOG_STORE_CONFIG`](crate::handover::LOG_STORE_CONFIG),
        /// every key it holds); then the standard `OTEL_*` and ZenML `ZENML_LOGS_OTEL_*`
        /// environment variables; then the default. In a struct literal such as this one a
        /// field equal to its default counts as not given (Rust cannot tell it apart); the
        /// `with_*` setters ([`with_compression`](Self::with_compression), …) make an
        /// [`ExplicitConfig`](crate::ExplicitConfig) whose every set field wins, default or
        /// not. [`ZenmlOtelLayer::new`](crate::ZenmlOtelLayer::new) applies the handover and
        /// the environment itself; [`from_env`](Self::from_env) shows the result.
        ///
        /// ```
        /// let cfg: zenml_otel::OtelLogStoreConfig = serde_json::from_str(
        ///     r#"{"endpoint": "http://otel-collector:4318", "headers": "{\"Authorization\": \"Bearer t\"}"}"#,
        /// )?;
        /// assert_eq!(cfg.headers["Authorization"], "Bearer t");
        /// assert_eq!(cfg.max_queue_size, 2048);
        /// # Ok::<(), serde_json::Error>(())
        /// ```
        #[derive(Clone, PartialEq, Eq)]
        pub struct OtelLogStoreConfig {
            $($(#[doc = $doc])* #[doc = env_doc!($vars, $transport)] pub $field: $ty,)*
        }

        impl Default for OtelLogStoreConfig {
            fn default() -> Self {
                Self { $($field: $default,)* }
            }
        }

        impl ::std::fmt::Debug for OtelLogStoreConfig {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct("OtelLogStoreConfig")
                    $(.field(stringify!($field), debug_view!(&self.$field, $($show)?)))*
                    .finish()
            }
        }

        impl OtelLogStoreConfig {
            $(
                #[doc = concat!(
                    "Sets `", stringify!($field), "` explicitly: it wins over the handover and ",
                    "the environment even when it equals the default. Starts an ",
                    "[`ExplicitConfig`](crate::ExplicitConfig) from this configuration."
                )]
                pub fn $setter(self, value: $ty) -> super::ExplicitConfig {
                    super::ExplicitConfig::from(self).$setter(value)
                }
            )*
        }

        impl super::ExplicitConfig {
            $(
                #[doc = concat!(
                    "Sets `", stringify!($field), "` explicitly: it wins over the handover and ",
                    "the environment even when it equals the default."
                )]
                pub fn $setter(mut self, value: $ty) -> Self {
                    self.config.$field = value;
                    self.set.$field = true;
                    self
                }
            )*
        }

        /// Which fields a program set through a setter.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub(super) struct Marks {
            $(pub(super) $field: bool,)*
        }

        /// What one source says, field by field; `None`: nothing (a JSON key absent or `null`,
        /// a variable unset or blank, a struct field at its default and not set explicitly).
        #[derive(Clone, Debug, Default, PartialEq, ::serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub(super) struct Given {
            $(
                #[serde(default $(, $($serde)*)?)]
                pub(super) $field: Option<$ty>,
            )*
        }

        impl Given {
            /// `self`'s values, and `fallback`'s where `self` says nothing.
            pub(super) fn or(self, fallback: Given) -> Given {
                Given { $($field: self.$field.or(fallback.$field),)* }
            }

            /// The values given, defaults for the rest.
            pub(super) fn or_defaults(self) -> OtelLogStoreConfig {
                let default = OtelLogStoreConfig::default();
                OtelLogStoreConfig { $($field: self.$field.unwrap_or(default.$field),)* }
            }

            /// Which fields this source gives.
            pub(super) fn marks(&self) -> Marks {
                Marks { $($field: self.$field.is_some(),)* }
            }

            /// A program's configuration: what it set explicitly, and every field it wrote
            /// differently from the default.
            pub(super) fn explicit(config: OtelLogStoreConfig, set: Marks) -> Given {
                let default = OtelLogStoreConfig::default();
                Given {
                    $($field: (set.$field || config.$field != default.$field)
                        .then_some(config.$field),)*
                }
            }

            /// Every field this source leaves unset takes its variables' value, except the
            /// transport's when `closed` (a handover gave them). A malformed value is an error
            /// naming the variable.
            pub(super) fn overlay_env(
                &mut self,
                env: $crate::environ::Env<'_>,
                closed: bool,
            ) -> Result<(), $crate::Error> {
                $($(
                    if self.$field.is_none() && !(closed && $transport) {
                        if let Some((name, value)) = super::env::first(env, vars::$field)? {
                            let parse = $parse;
                            self.$field = Some(
                                parse(value.trim())
                                    .map_err(|problem| $crate::Error::config(name, problem))?,
                            );
                        }
                    }
                )?)*
                Ok(())
            }
        }

        /// Each field's environment variables, first match wins (an empty list for a field
        /// no variable sets, unused but declared like the others).
        #[allow(non_upper_case_globals, dead_code)]
        pub(super) mod vars {
            $(pub(in crate::config) const $field: &[&str] = &$vars;)*
        }

        /// The fields as the documentation describes them, in declaration order.
        #[cfg(test)]
        pub(super) const FIELDS: &[docs::Field] = &[
            $(docs::Field {
                name: stringify!($field),
                setter: stringify!($setter),
                env: vars::$field,
                flavor: $flavor,
                transport: $transport,
                default: |config| docs::Shown::shown(&config.$field),
            },)*
        ];
    };
}
