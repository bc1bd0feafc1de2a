use super::*;

struct Refuse;

impl NameResolver for Refuse {
    fn lookup(&self, host: &str) -> LookupFuture<'_> {
        let host = host.to_owned();
        Box::pin(async move { Err(io::Error::new(io::ErrorKind::NotFound, host)) })
    }
}

#[tokio::test]
async fn static_hosts_answer_and_delegate() {
    let ip: IpAddr = "10.0.0.7".parse().expect("ip");
    let r = StaticHosts::new(
        [
            ("Registry.Test.".to_owned(), ip),
            ("registry.test".to_owned(), ip),
        ],
        Arc::new(Refuse),
    );
    assert_eq!(r.lookup("registry.test").await.expect("hit"), vec![ip]);
    assert_eq!(r.lookup("REGISTRY.test.").await.expect("hit"), vec![ip]);
    let miss = r.lookup("other.test").await.expect_err("delegated");
    assert_eq!(miss.kind(), io::ErrorKind::NotFound);
}

#[tokio::test]
async fn system_resolver_answers_ip_literals_and_localhost() {
    let r = SystemResolver::new();
    let ips = r.lookup("127.0.0.1").await.expect("literal");
    assert_eq!(ips, vec![IpAddr::from([127, 0, 0, 1])]);
    // localhost comes from the hosts file or hickory's built-in answer, never DNS.
    let ips = r.lookup("localhost").await.expect("localhost");
    assert!(
        !ips.is_empty() && ips.iter().all(IpAddr::is_loopback),
        "{ips:?}"
    );
}
