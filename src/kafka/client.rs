//! The one place a Kafka client configuration is made.
//!
//! Every client of the crate (the pipeline's consumer and producers, restore readers, the admin
//! client, the load generator and the demo) starts from [`config`]: the brokers, then the
//! client's own defaults, then the user's `--kafka-option`s, which win. Keeping the order in one
//! function means an option such as `security.protocol` or `message.max.bytes` reaches every
//! client, and no client can forget it.

use std::path::Path;

use rdkafka::config::ClientConfig;

/// Splits `key=value` options; anything without `=` is an error the user must fix. The error
/// names the option by position only: an option may be a secret (`sasl.password=…`) typed
/// with the wrong separator, and errors are logged.
pub fn parse_options(options: &[String]) -> Result<Vec<(String, String)>, String> {
    options
        .iter()
        .filter(|o| !o.trim().is_empty())
        .enumerate()
        .map(|(i, o)| {
            o.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| {
                    format!(
                        "kafka option {} of {} is not key=value (its text is not shown: it may \
                         hold a secret)",
                        i + 1,
                        options.len()
                    )
                })
        })
        .collect()
}

/// Reads a file of `key=value` librdkafka settings, one per line; blank lines and lines
/// starting with `#` are skipped. The file is where secrets go (`sasl.password`,
/// `ssl.key.password`): errors name the file and line, never a value.
pub fn read_option_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the kafka option file {}: {e}", path.display()))?;
    let mut options = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                options.push((k.trim().to_string(), v.trim().to_string()))
            }
            _ => {
                return Err(format!(
                    "{} line {}: not key=value (its text is not shown: it may hold a secret)",
                    path.display(),
                    n + 1
                ))
            }
        }
    }
    Ok(options)
}

/// A client configuration: `bootstrap.servers`, then `defaults` (this client's own settings),
/// then `user_options` (`--kafka-option`), each overriding what came before.
pub fn config(
    brokers: &str,
    defaults: &[(&str, &str)],
    user_options: &[(String, String)],
) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", brokers);
    for (k, v) in defaults {
        cfg.set(*k, *v);
    }
    for (k, v) in user_options {
        cfg.set(k, v);
    }
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_options_win_over_defaults() {
        let user = parse_options(&["linger.ms = 7".into(), "".into()]).expect("valid options");
        let cfg = config("b:9092", &[("linger.ms", "5"), ("acks", "all")], &user);
        assert_eq!(cfg.get("bootstrap.servers"), Some("b:9092"));
        assert_eq!(cfg.get("linger.ms"), Some("7"));
        assert_eq!(cfg.get("acks"), Some("all"));
    }

    #[test]
    fn an_option_without_equals_is_refused_without_showing_it() {
        let err = parse_options(&["linger.ms=1".into(), "sasl.password:hunter2".into()])
            .expect_err("not key=value");
        assert!(err.contains("option 2 of 2"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn an_option_file_is_read_and_its_errors_show_no_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("kafka.properties");
        std::fs::write(
            &path,
            "# SASL\nsasl.username = svc\n\nsasl.password=s3cr=t\n",
        )
        .expect("write");
        assert_eq!(
            read_option_file(&path).expect("valid file"),
            vec![
                ("sasl.username".to_string(), "svc".to_string()),
                ("sasl.password".to_string(), "s3cr=t".to_string()),
            ]
        );
        std::fs::write(&path, "sasl.username=svc\nsasl.password hunter2\n").expect("write");
        let err = read_option_file(&path).expect_err("line 2 is not key=value");
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = read_option_file(&dir.path().join("missing")).expect_err("no file");
        assert!(err.contains("missing"), "{err}");
    }
}
