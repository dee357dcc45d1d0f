use super::*;
use crate::get::probe::Validator;

const LM: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
const LM_SECS: u64 = 784_111_777;

fn probe(length: Option<u64>, etag: Option<&str>, lm: Option<&str>) -> Probe {
    Probe {
        length,
        ranges: true,
        validator: Validator {
            etag: etag.filter(|e| e.starts_with('"')).map(String::from),
            last_modified: lm.map(String::from),
            any_etag: etag.map(String::from),
        },
        ..Probe::default()
    }
}

fn recorded(url: &str, p: &Probe) -> Local {
    Local {
        url: Some(recorded_url(url)),
        key: Some(Key::of(p)),
        length: p.length.unwrap_or(0),
        mtime: Some(LM_SECS),
    }
}

fn current(v: Verdict) -> bool {
    matches!(v, Verdict::Current(_))
}

fn differs(v: Verdict) -> String {
    match v {
        Verdict::Differs(why) => why,
        Verdict::Current(how) => panic!("expected a difference, got current ({how})"),
    }
}

#[test]
fn same_url_and_validators_is_current() {
    let p = probe(Some(10), Some("\"a\""), Some(LM));
    assert!(current(compare(
        &recorded("http://h/f", &p),
        "http://h/f",
        &p
    )));
}

#[test]
fn a_changed_remote_says_what_changed() {
    let old = probe(Some(10), Some("\"a\""), Some(LM));
    let new = probe(Some(12), Some("\"b\""), Some(LM));
    let why = differs(compare(&recorded("http://h/f", &old), "http://h/f", &new));
    assert!(why.contains("ETag \"a\" -> \"b\""), "{why}");
    assert!(why.contains("length 10 -> 12"), "{why}");
    assert!(!why.contains("Last-Modified"), "{why}");
}

#[test]
fn a_weak_etag_still_reveals_a_change() {
    let old = probe(Some(10), Some("W/\"a\""), None);
    let new = probe(Some(10), Some("W/\"b\""), None);
    differs(compare(&recorded("http://h/f", &old), "http://h/f", &new));
}

#[test]
fn a_local_edit_is_not_current() {
    let p = probe(Some(10), Some("\"a\""), Some(LM));
    let mut local = recorded("http://h/f", &p);
    local.mtime = Some(LM_SECS + 60);
    assert!(differs(compare(&local, "http://h/f", &p)).contains("local file was changed"));
    let mut local = recorded("http://h/f", &p);
    local.length = 9;
    differs(compare(&local, "http://h/f", &p));
}

#[test]
fn another_url_needs_a_strong_etag() {
    let strong = probe(Some(10), Some("\"a\""), None);
    assert!(current(compare(
        &recorded("http://mirror/f", &strong),
        "http://h/f",
        &strong
    )));
    let weak = probe(Some(10), Some("W/\"a\""), Some(LM));
    let why = differs(compare(
        &recorded("http://mirror/f", &weak),
        "http://h/f",
        &weak,
    ));
    assert!(why.contains("http://mirror/f"), "{why}");
}

#[test]
fn credentials_and_fragments_are_not_recorded() {
    assert_eq!(
        recorded_url("https://me:secret@h:8443/a/f?x=1#top"),
        "https://h:8443/a/f?x=1"
    );
    // The same URL with other credentials is the same origin.
    let p = probe(Some(10), None, Some(LM));
    let local = recorded("http://other:pw@h/f", &p);
    assert!(current(compare(&local, "http://me:secret@h/f", &p)));
}

#[test]
fn without_a_record_length_and_mtime_decide() {
    let p = probe(Some(10), Some("\"a\""), Some(LM));
    let plain = Local {
        length: 10,
        mtime: Some(LM_SECS),
        ..Local::default()
    };
    assert!(current(compare(&plain, "http://h/f", &p)));
    let touched = Local {
        mtime: Some(LM_SECS + 1),
        ..plain.clone()
    };
    assert!(differs(compare(&touched, "http://h/f", &p)).contains("mtime"));
    let shorter = Local {
        length: 9,
        ..plain.clone()
    };
    assert!(differs(compare(&shorter, "http://h/f", &p)).contains("9 bytes"));
    // No Last-Modified: the length alone proves nothing (wget -c would call it complete).
    let no_lm = probe(Some(10), Some("\"a\""), None);
    assert!(differs(compare(&plain, "http://h/f", &no_lm)).contains("no Last-Modified"));
    // No length: nothing to compare.
    differs(compare(&plain, "http://h/f", &probe(None, None, None)));
}

#[test]
fn an_unknown_key_version_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, b"0123456789").unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let v2 = br#"{"v":2,"length":10,"etag":"\"a\"","last_modified":null}"#;
    xattr::set(&file, FERRY_KEY, v2).expect("user xattrs in the temp directory");
    let local = inspect(&path).unwrap().unwrap();
    assert_eq!(local.key, None, "a key of another version is not misread");
    assert_eq!(local.length, 10);
}

#[test]
fn record_then_inspect_round_trips_on_a_real_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, b"0123456789").unwrap();
    let p = probe(Some(10), Some("\"a\""), Some(LM));
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    record(&file, "http://u:pw@h/f", &p).unwrap();
    let local = inspect(&path).unwrap().unwrap();
    assert_eq!(local.mtime, Some(LM_SECS));
    assert_eq!(local.url.as_deref(), Some("http://h/f"), "{local:?}");
    assert_eq!(local.key, Some(Key::of(&p)));
    assert!(current(compare(&local, "http://h/f", &p)));
    assert_eq!(inspect(&dir.path().join("missing")).unwrap(), None);
}
