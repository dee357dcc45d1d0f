//! `--store URL` (`FERRY_STORE`): which backend serves the files. A plain path or `file://…`
//! is the directory store (the default); `s3://bucket/prefix` the S3-compatible object store.
//! Parsing is pure; opening the backend is `app::App::build`'s job.

use std::path::PathBuf;

/// A parsed `--store` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A local directory.
    Dir(PathBuf),
    /// `s3://bucket/prefix`: objects under `prefix/` (no leading or trailing `/`; empty for
    /// the whole bucket).
    S3 { bucket: String, prefix: String },
}

impl std::str::FromStr for StoreUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("expected s3://BUCKET[/PREFIX], got {s:?}"));
            }
            let prefix = prefix.trim_matches('/');
            if !prefix.is_empty() && prefix.split('/').any(|seg| matches!(seg, "" | "." | "..")) {
                return Err(format!(
                    "expected a prefix of non-empty segments without . or .., got {prefix:?}"
                ));
            }
            return Ok(StoreUrl::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
            });
        }
        if let Some(path) = s.strip_prefix("file://") {
            // file:///srv/www (RFC 8089 with an empty authority) or file://localhost/srv/www.
            let path = path.strip_prefix("localhost").unwrap_or(path);
            if !path.starts_with('/') {
                return Err(format!("expected file:///ABSOLUTE/PATH, got {s:?}"));
            }
            return Ok(StoreUrl::Dir(PathBuf::from(path)));
        }
        match s.split_once("://") {
            Some((scheme, _)) if !scheme.contains('/') => Err(format!(
                "expected a path, file://… or s3://…, got the scheme {scheme:?}"
            )),
            _ if s.is_empty() => Err("expected a path, file://… or s3://…, got nothing".into()),
            _ => Ok(StoreUrl::Dir(PathBuf::from(s))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<StoreUrl, String> {
        s.parse()
    }

    fn s3(bucket: &str, prefix: &str) -> StoreUrl {
        StoreUrl::S3 {
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    #[test]
    fn paths_and_file_urls_are_the_directory_store() {
        assert_eq!(p("fixtures/www"), Ok(StoreUrl::Dir("fixtures/www".into())));
        assert_eq!(p("/srv/www"), Ok(StoreUrl::Dir("/srv/www".into())));
        assert_eq!(p("file:///srv/www"), Ok(StoreUrl::Dir("/srv/www".into())));
        assert_eq!(p("file://localhost/srv"), Ok(StoreUrl::Dir("/srv".into())));
        assert!(p("file://relative/x").is_err());
        assert!(p("").is_err());
        // A colon-slash-slash inside a path is still a path.
        assert_eq!(p("./a://b"), Ok(StoreUrl::Dir("./a://b".into())));
    }

    #[test]
    fn s3_urls_name_a_bucket_and_an_optional_prefix() {
        assert_eq!(p("s3://b"), Ok(s3("b", "")));
        assert_eq!(p("s3://b/"), Ok(s3("b", "")));
        assert_eq!(p("s3://b/files/2024/"), Ok(s3("b", "files/2024")));
        assert!(p("s3:///x").is_err(), "no bucket");
        assert!(p("s3://b/a//c").is_err(), "empty segment");
        assert!(p("s3://b/a/../c").is_err());
        assert!(p("gs://b/x").unwrap_err().contains("\"gs\""));
    }
}
