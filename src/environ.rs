//! The process's environment, the one place the crate reads it: each variable is read as bytes,
//! and a value that is not UTF-8 is an error naming the variable, never an unset one (a
//! non-UTF-8 `ZENML_OTEL_SPOOL_DIR` must not silently mean "no spool").

use crate::Error;

/// Where configuration and handover variables are looked up: the process's environment
/// ([`process`]), or a map in tests. `Ok(None)` when the variable is unset.
pub(crate) type Env<'a> = &'a dyn Fn(&str) -> Result<Option<String>, Error>;

/// Reads `name` from the process's environment; the handover's owner's variables read as
/// unset in any other process (`handover::may_read`).
pub(crate) fn process(name: &str) -> Result<Option<String>, Error> {
    match read(name)? {
        Some(_) if !crate::handover::may_read(name, &read)? => Ok(None),
        value => Ok(value),
    }
}

fn read(name: &str) -> Result<Option<String>, Error> {
    match std::env::var_os(name) {
        None => Ok(None),
        Some(value) => value
            .into_string()
            .map(Some)
            .map_err(|_| Error::config(name, "is not valid UTF-8")),
    }
}

/// An [`Env`] over fixed pairs, for tests.
#[cfg(test)]
pub(crate) fn fixed(vars: &[(&str, &str)]) -> impl Fn(&str) -> Result<Option<String>, Error> {
    let vars: std::collections::HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| Ok(vars.get(name).cloned())
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn a_value_that_is_not_utf8_is_an_error_naming_the_variable() {
        let name = "ZENML_OTEL_TEST_NOT_UTF8";
        std::env::set_var(name, OsStr::from_bytes(b"/tmp/\xff\xfe"));
        let error = super::process(name).unwrap_err();
        std::env::remove_var(name);
        assert_eq!(error.field(), Some(name));
        assert!(error.to_string().contains("UTF-8"), "{error}");
        assert_eq!(super::process(name).unwrap(), None);
    }
}
