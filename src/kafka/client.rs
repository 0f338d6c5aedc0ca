//! The one place a Kafka client configuration is made.
//!
//! Every client of the crate (the pipeline's consumer and producers, restore readers, the admin
//! client, the load generator and the demo) starts from [`config`]: the brokers, then the
//! client's own defaults, then the user's `--kafka-option`s, which win. Keeping the order in one
//! function means an option such as `security.protocol` or `message.max.bytes` reaches every
//! client, and no client can forget it.

use rdkafka::config::ClientConfig;

/// Splits `key=value` options; anything without `=` is an error the user must fix.
pub fn parse_options(options: &[String]) -> Result<Vec<(String, String)>, String> {
    options
        .iter()
        .filter(|o| !o.trim().is_empty())
        .map(|o| {
            o.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| format!("kafka option {o:?} is not key=value"))
        })
        .collect()
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
    fn an_option_without_equals_is_refused() {
        let err = parse_options(&["linger.ms".into()]).expect_err("not key=value");
        assert!(err.contains("linger.ms"), "{err}");
    }
}
