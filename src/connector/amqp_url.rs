//! The broker URL of an AMQP connector, and the service name beside it.
//!
//! Always compiled (without the `amqp` feature too), so a connector string
//! for a broker loads, dumps and shows everywhere; only binding and
//! connecting need the feature. The URL's password is shown as
//! `<redacted>` by `Display` and `Debug`.

use std::fmt;

/// Longest broker URL accepted.
const MAX_URL_LEN: usize = 1024;
/// Longest service name accepted (queue names derived from it stay well
/// under AMQP's 255-byte limit).
pub const MAX_SERVICE_LEN: usize = 128;

/// A RabbitMQ broker URL, `amqp://user:password@host:port/vhost`.
///
/// Its `Display` and `Debug` show the password as `<redacted>`;
/// [`AmqpUrl::expose`] gives the full text.
///
/// ```
/// use switchboard::connector::AmqpUrl;
///
/// let url = AmqpUrl::parse("amqp://app:hunter2@127.0.0.1:5672/%2f").unwrap();
/// assert_eq!(url.to_string(), "amqp://app:<redacted>@127.0.0.1:5672/%2f");
/// assert!(!format!("{url:?}").contains("hunter2"));
/// assert_eq!(url.expose(), "amqp://app:hunter2@127.0.0.1:5672/%2f");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AmqpUrl(String);

impl AmqpUrl {
    /// Checks the URL's shape: the `amqp://` scheme, a host, no whitespace
    /// or control characters. The reason for a refusal never contains the
    /// password.
    ///
    /// ```
    /// use switchboard::connector::AmqpUrl;
    ///
    /// assert!(AmqpUrl::parse("amqp://guest:guest@127.0.0.1:5672/%2f").is_ok());
    /// assert!(AmqpUrl::parse("http://example.com").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<AmqpUrl, String> {
        if text.len() > MAX_URL_LEN {
            return Err(format!(
                "the broker URL is longer than {MAX_URL_LEN} characters"
            ));
        }
        if text.starts_with("amqps://") {
            return Err("amqps:// (TLS) is not supported by this build; use amqp://".into());
        }
        let Some(rest) = text.strip_prefix("amqp://") else {
            return Err("the broker URL must start with amqp://".into());
        };
        if text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii())
        {
            return Err(
                "the broker URL contains whitespace, control or non-ASCII characters \
                 (percent-encode them)"
                    .into(),
            );
        }
        let authority = authority(rest);
        let host = match authority.rfind('@') {
            Some(at) => &authority[at + 1..],
            None => authority,
        };
        if host.is_empty() || host.starts_with(':') {
            return Err("the broker URL names no host".into());
        }
        Ok(AmqpUrl(text.to_owned()))
    }

    /// The URL as given, password included: for connecting, and for the
    /// dumped connector string.
    ///
    /// ```
    /// use switchboard::connector::AmqpUrl;
    ///
    /// let url = AmqpUrl::parse("amqp://u:pw@h/%2f").unwrap();
    /// assert_eq!(url.expose(), "amqp://u:pw@h/%2f");
    /// ```
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password replaced by `<redacted>`.
    ///
    /// ```
    /// use switchboard::connector::AmqpUrl;
    ///
    /// let url = AmqpUrl::parse("amqp://127.0.0.1").unwrap();
    /// assert_eq!(url.redacted(), "amqp://127.0.0.1");
    /// ```
    pub fn redacted(&self) -> String {
        let rest = &self.0["amqp://".len()..];
        let authority = authority(rest);
        let Some(at) = authority.rfind('@') else {
            return self.0.clone();
        };
        let userinfo = &authority[..at];
        let Some(colon) = userinfo.find(':') else {
            return self.0.clone();
        };
        format!("amqp://{}:<redacted>{}", &userinfo[..colon], &rest[at..])
    }
}

/// The part between `scheme://` and the path or query.
fn authority(rest: &str) -> &str {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

impl fmt::Display for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AmqpUrl({:?})", self.redacted())
    }
}

/// A service name: 1 to [`MAX_SERVICE_LEN`] characters of `[A-Za-z0-9._-]`.
pub(crate) fn check_service(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the service name is empty".into());
    }
    if name.len() > MAX_SERVICE_LEN {
        return Err(format!(
            "the service name is longer than {MAX_SERVICE_LEN} characters"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "the service name {name:?} contains {c:?} (allowed: letters, digits, '.', '_', '-')"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_only_the_password() {
        let cases = [
            ("amqp://u:p@h:1/%2f", "amqp://u:<redacted>@h:1/%2f"),
            ("amqp://u@h", "amqp://u@h"),
            ("amqp://h:5672", "amqp://h:5672"),
            ("amqp://u:p@ss@h/v?x=1", "amqp://u:<redacted>@h/v?x=1"),
            ("amqp://u:@h", "amqp://u:<redacted>@h"),
        ];
        for (url, shown) in cases {
            assert_eq!(AmqpUrl::parse(url).unwrap().redacted(), shown, "{url}");
        }
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        for url in [
            "",
            "amqp://",
            "amqp://u:pw@",
            "amqp://u:pw@:5672",
            "tcp://h",
            "amqp://u:pw @h",
            "amqps://u:pw@h",
        ] {
            let reason = AmqpUrl::parse(url).unwrap_err();
            assert!(!reason.contains("pw"), "{url}: {reason}");
        }
    }

    #[test]
    fn service_names() {
        assert!(check_service("echo.v1_a-b").is_ok());
        for bad in ["", "a b", "a/b", "ä", &"x".repeat(MAX_SERVICE_LEN + 1)] {
            assert!(check_service(bad).is_err(), "{bad:?}");
        }
    }
}
