//! ferryd GET/HEAD over real HTTP.

use ferry_tests::{client, pattern, TestServer};

#[tokio::test]
async fn whole_file_with_validators() {
    let srv = TestServer::start().await;
    let data = pattern(100_000, 1);
    srv.put_file("a.bin", &data);
    let resp = client().get(srv.url("/a.bin")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["content-length"], "100000");
    assert!(h["etag"].to_str().unwrap().starts_with('"'), "strong etag");
    assert!(h.contains_key("last-modified"));
    assert_eq!(resp.bytes().await.unwrap(), data);
    srv.stop().await;
}
