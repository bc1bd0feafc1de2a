use super::*;
use serde_json::json;

#[test]
fn parses_all_scoped_spellings() {
    for p in ["/@a%2fb", "/@a%2Fb", "/@a/b"] {
        let r = parse_registry_path(p).unwrap();
        assert_eq!(r.name, "@a/b");
        assert_eq!(r.target, RegistryTarget::Packument);
        assert_eq!(r.uplink, None);
    }
    let r = parse_registry_path("/~corp/@a%2Fb").unwrap();
    assert_eq!(r.uplink.as_deref(), Some("corp"));
    let r = parse_registry_path("/@a/b/-/b-1.0.0.tgz").unwrap();
    assert_eq!(r.target, RegistryTarget::Tarball("b-1.0.0.tgz".into()));
    let r = parse_registry_path("/@a%2fb/-/b-1.0.0.tgz").unwrap();
    assert_eq!(r.target, RegistryTarget::Tarball("b-1.0.0.tgz".into()));
    let r = parse_registry_path("/lodash/latest").unwrap();
    assert_eq!(r.target, RegistryTarget::Version("latest".into()));
}

#[test]
fn rejects_hostile_paths() {
    for p in [
        "/..",
        "/%2e%2e",
        "/@a/..",
        "/a/-/..%2fx.tgz",
        "/@a",
        "/a/b/c",
        "/.hidden",
        "/a%00b",
        "/~/x",
        "/a b",
        "/a/1.0.0%2f..%2fx",
        "/a/1.0.0%5cx",
        "/a/1.0.0%0a",
        "/a/-/x%5c..%5cy.tgz",
        "/a/-/x%0d.tgz",
        "/~up%2fx/a",
        "/~up%00/a",
    ] {
        assert!(parse_registry_path(p).is_err(), "{p}");
    }
}

#[test]
fn merge_first_wins_and_rewrite_strips_tags() {
    let a = json!({"name":"p","dist-tags":{"latest":"1.0.0"},"versions":{"1.0.0":{"name":"p","version":"1.0.0","dist":{"tarball":"http://up/p/-/p-1.0.0.tgz"}}}});
    let b = json!({"name":"p","dist-tags":{"latest":"2.0.0","next":"2.0.0"},"versions":{"1.0.0":{"name":"p","version":"1.0.0","x":1},"2.0.0":{"name":"p","version":"2.0.0","dist":{"tarball":"http://other/p/-/p-2.0.0.tgz?sig=1"}}}});
    let mut m = merge(vec![("a".into(), a), ("b".into(), b)]).unwrap();
    assert_eq!(m["dist-tags"]["latest"], "1.0.0");
    assert_eq!(m["dist-tags"]["next"], "2.0.0");
    assert_eq!(m["versions"]["1.0.0"][UPLINK_FIELD], "a");
    assert_eq!(m["versions"]["2.0.0"][UPLINK_FIELD], "b");
    assert_eq!(find_by_file(&m, "p-2.0.0.tgz").unwrap().0, "2.0.0");
    rewrite_tarballs(&mut m, "http://me/");
    assert_eq!(
        m["versions"]["2.0.0"]["dist"]["tarball"],
        "http://me/p/-/p-2.0.0.tgz"
    );
    assert!(m["versions"]["1.0.0"].get(UPLINK_FIELD).is_none());
}

#[test]
fn rewrite_never_keeps_an_upstream_url() {
    // No usable name anywhere: the upstream URL is dropped, not served.
    let mut doc = json!({"versions":{
        "1.0.0":{"dist":{"tarball":"http://up/x/-/x-1.0.0.tgz"}},
        "2.0.0":{"name":"../evil","dist":{"tarball":"http://up/x/-/x-2.0.0.tgz"}}
    }});
    rewrite_tarballs(&mut doc, "http://me/");
    assert!(doc["versions"]["1.0.0"]["dist"].get("tarball").is_none());
    assert!(doc["versions"]["2.0.0"]["dist"].get("tarball").is_none());
    // An invalid version name falls back to the document's name.
    let mut doc = json!({"name":"p","versions":{
        "1.0.0":{"name":"../evil","dist":{"tarball":"http://up/p/-/p-1.0.0.tgz"}}
    }});
    rewrite_tarballs(&mut doc, "http://me/");
    assert_eq!(
        doc["versions"]["1.0.0"]["dist"]["tarball"],
        "http://me/p/-/p-1.0.0.tgz"
    );
}

#[test]
fn abbreviation_keeps_install_fields() {
    let doc = json!({"name":"p","readme":"long","time":{"modified":"2020","1.0.0":"2019"},"dist-tags":{"latest":"1.0.0"},
        "versions":{"1.0.0":{"name":"p","version":"1.0.0","description":"d","scripts":{"postinstall":"x"},"os":["linux"],"dist":{"integrity":"sha512-x"}}}});
    let a = abbreviate(&doc);
    assert!(a.get("readme").is_none());
    assert_eq!(a["modified"], "2020");
    assert_eq!(a["time"]["1.0.0"], "2019");
    assert_eq!(a["versions"]["1.0.0"]["hasInstallScript"], true);
    assert_eq!(a["versions"]["1.0.0"]["os"], json!(["linux"]));
    assert!(a["versions"]["1.0.0"].get("description").is_none());
    assert_eq!(version_doc(&doc, "latest").unwrap()["version"], "1.0.0");
}
