//! What went wrong in a TLS handshake, in words (issue 9 §2). A certificate that does not
//! verify is not transient: the request fails at once, naming the reason (found in the error
//! chain reqwest returns: hyper → io::Error → `rustls::Error`) and the way out, as curl does.

use std::error::Error as StdError;

use rustls::CertificateError;

/// What to do about a certificate that does not verify.
pub const WAY_OUT: &str =
    "--ca-cert FILE trusts another CA (PEM), --insecure skips verification (unsafe)";

/// The rustls error somewhere in `err`'s chain, if any. `io::Error` hides the error it wraps
/// from `source()`, so wrapped errors are looked into with `get_ref()`.
pub fn rustls_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    let mut cur: Option<&'a (dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        let wrapped = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn StdError + 'static));
        cur = wrapped.or_else(|| e.source());
    }
    None
}

/// The TLS failure in `err`'s chain as a sentence: "certificate not trusted: unknown issuer
/// …; --ca-cert …", or the handshake error for other TLS failures.
pub fn describe(err: &(dyn StdError + 'static)) -> Option<String> {
    let tls = rustls_error(err)?;
    Some(match tls {
        rustls::Error::InvalidCertificate(cert) => {
            format!("TLS certificate not trusted: {}; {WAY_OUT}", reason(cert))
        }
        other => format!("TLS handshake failed: {other}"),
    })
}

fn date(unix_secs: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_secs))
}

/// The reason a certificate was refused, in the words curl users know.
pub fn reason(cert: &CertificateError) -> String {
    match cert {
        CertificateError::UnknownIssuer => {
            "unknown issuer (not signed by a certificate authority ferry trusts)".into()
        }
        CertificateError::ExpiredContext { not_after, .. } => {
            format!("expired on {}", date(not_after.as_secs()))
        }
        CertificateError::Expired => "expired".into(),
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            format!("not valid yet ({cert})")
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!("name mismatch ({cert})")
        }
        CertificateError::Revoked => "revoked".into(),
        CertificateError::BadSignature => "bad signature".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rustls_error_is_found_inside_io_errors_and_sources() {
        let cert = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, cert);
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("error sending request")
            }
        }
        impl StdError for Outer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let text = describe(&Outer(io)).unwrap();
        assert!(text.contains("unknown issuer"), "{text}");
        assert!(
            text.contains("--ca-cert FILE") && text.contains("--insecure"),
            "{text}"
        );
        let plain = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(describe(&plain), None);
    }

    #[test]
    fn reasons_name_expiry_and_names() {
        assert!(reason(&CertificateError::Expired).starts_with("expired"));
        assert!(reason(&CertificateError::NotValidForName).starts_with("name mismatch"));
    }
}
