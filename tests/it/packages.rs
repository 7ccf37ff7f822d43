//! Ops shared as OCI packages, against a real registry: Debian's `docker-registry`, started
//! on 127.0.0.1 at a free port with its storage in the test's directory (`.ci/run` installs
//! it; without it these tests fail saying so).

use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::jobs::{err, json, out, sluice};

/// A registry process, stopped when dropped.
struct TestRegistry {
    child: Child,
    addr: String,
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn registry(dir: &Path) -> TestRegistry {
    assert!(
        Path::new("/usr/bin/docker-registry").is_file(),
        "docker-registry is missing: apt-get install docker-registry (.ci/run does)"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{ level: error }}\nstorage:\n  filesystem: {{ rootdirectory: {} }}\n  delete: {{ enabled: true }}\nhttp:\n  addr: {addr}\n",
            dir.join("registry-data").display()
        ),
    )
    .unwrap();
    // Wrapped at once: dropping the TestRegistry kills and waits for it, whatever happens.
    let registry = TestRegistry {
        child: Command::new("/usr/bin/docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting docker-registry"),
        addr: addr.clone(),
    };
    // Ready when /v2/ answers (bounded: 200 tries, 25 ms apart).
    for _ in 0..200 {
        if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
            use std::io::{Read, Write};
            let _ = s.write_all(b"GET /v2/ HTTP/1.0\r\n\r\n");
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            if answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200") {
                return registry;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("docker-registry did not answer on {addr}");
}

#[test]
fn a_package_is_pushed_signed_locked_and_run_and_tampering_is_refused() {
    let home = crate::home();
    let reg = registry(home.path());
    let echo = sluice_std_ops::test_ops::ECHO;
    let reference = format!("oci://{}/team-a/echo:1.0", reg.addr);

    // `plugin` is the old name of `package`, kept as an alias for one release.
    let o = sluice(home.path(), &["plugin", "push", echo, &reference]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    assert!(out(&o).starts_with("pushed echo "), "{}", out(&o));

    // No trust policy yet: nothing pulled is trusted.
    let o = sluice(home.path(), &["package", "pull", &reference]);
    assert_eq!(o.status.code(), Some(5), "{}{}", out(&o), err(&o));
    assert!(
        err(&o).contains("is not trusted: no entry of the trust policy matches"),
        "{}",
        err(&o)
    );

    // A key, a policy that wants it for team-a, a signature.
    let key = home.path().join("team-a");
    let o = sluice(home.path(), &["package", "keygen", key.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    std::fs::write(
        home.path().join("trust.yaml"),
        format!(
            "keys:\n  team-a: {}\ntrust:\n  - {{ match: \"{}/team-a/*\", keys: [team-a] }}\n",
            public.trim(),
            reg.addr
        ),
    )
    .unwrap();
    let o = sluice(home.path(), &["package", "pull", &reference]);
    assert_eq!(o.status.code(), Some(5));
    assert!(
        err(&o).contains("it is unsigned, and the trust policy entry"),
        "{}",
        err(&o)
    );
    let o = sluice(
        home.path(),
        &[
            "package",
            "sign",
            &reference,
            "--key",
            key.with_extension("key").to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let o = sluice(home.path(), &["package", "pull", &reference, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let pulled = json(&o);
    assert_eq!(pulled["metadata"]["name"], "echo");

    let v = json(&sluice(
        home.path(),
        &["package", "inspect", &reference, "--json"],
    ));
    assert_eq!(v["signer"], "team-a", "{v}");
    assert_eq!(v["world"], "sluice:op/op@0.1.0");
    let list = json(&sluice(home.path(), &["package", "list", "--json"]));
    assert_eq!(list[0]["reference"], reference.as_str());

    // A rule that uses the package: locked, then run from the cache.
    let rule = home.path().join("shared.yaml");
    std::fs::write(
        &rule,
        format!(
            "rule: shared\nops:\n  echo: {{ package: \"{reference}\" }}\nphases:\n  run: [{{ id: hi, op: echo, with: {{ said: hello }} }}]\n"
        ),
    )
    .unwrap();
    let o = sluice(home.path(), &["run", rule.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err(&o).contains("is not in") && err(&o).contains("run `sluice lock"),
        "{}",
        err(&o)
    );
    let o = sluice(home.path(), &["lock", rule.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let lock: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.path().join("sluice.lock")).unwrap()).unwrap();
    let locked = &lock["packages"][reference.as_str()];
    assert_eq!(locked["manifest"], pulled["manifest"]);
    assert_eq!(locked["signer"], "team-a");

    // The registry goes away: the locked rule still runs, offline, from the cache.
    drop(reg);
    let o = sluice(home.path(), &["run", rule.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let v = json(&sluice(home.path(), &["show", "shared-1", "--json"]));
    assert_eq!(v["steps"]["hi"]["result"]["output"]["said"], "hello");

    // Cached content that no longer matches its digest is refused.
    let blob = home.path().join(format!(
        "packages/blobs/sha256/{}",
        locked["component"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
    ));
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes.push(0);
    std::fs::write(&blob, bytes).unwrap();
    let o = sluice(home.path(), &["run", rule.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(5), "{}{}", out(&o), err(&o));
    assert!(
        err(&o).contains("refused (the content changed"),
        "{}",
        err(&o)
    );

    // A policy that no longer trusts the key refuses the locked package too.
    std::fs::write(home.path().join("trust.yaml"), "trust: []\n").unwrap();
    std::fs::write(&blob, std::fs::read(echo).unwrap()).unwrap();
    let o = sluice(home.path(), &["run", rule.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(5), "{}{}", out(&o), err(&o));
    assert!(err(&o).contains("is not trusted"), "{}", err(&o));
}

/// `wkg`, from crates.io, installed under `target/toolchains/wkg` by `.ci/run` (about four
/// minutes of building; the test does not do it itself).
fn wkg() -> std::path::PathBuf {
    let tool = crate::jobs::root().join("target/toolchains/wkg/bin/wkg");
    assert!(
        tool.is_file(),
        "wkg is missing: cargo install wkg@{WKG} --locked --root target/toolchains/wkg (.ci/run does)"
    );
    tool
}

/// The wkg version `.ci/run` installs.
const WKG: &str = "0.16.1";

/// Conformance with wasm-pkg-tools: what sluice pushes, `wkg oci pull` gets byte for byte, and
/// what `wkg oci push` pushes, sluice pulls, locks and runs.
#[test]
fn packages_interoperate_with_wkg() {
    let home = crate::home();
    let reg = registry(home.path());
    let wkg = wkg();
    let echo = sluice_std_ops::test_ops::ECHO;

    let ours = format!("{}/team-a/echo:1.0", reg.addr);
    let o = sluice(
        home.path(),
        &["package", "push", echo, &format!("oci://{ours}")],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let got = home.path().join("from-wkg.wasm");
    let o = Command::new(&wkg)
        .args(["oci", "pull", &ours, "--insecure", &reg.addr, "-o"])
        .arg(&got)
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "wkg oci pull: {}{}", out(&o), err(&o));
    assert_eq!(std::fs::read(&got).unwrap(), std::fs::read(echo).unwrap());

    let theirs = format!("{}/sandbox/echo:2.0", reg.addr);
    let o = Command::new(&wkg)
        .args(["oci", "push", &theirs, echo, "--insecure", &reg.addr])
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "wkg oci push: {}{}", out(&o), err(&o));
    std::fs::write(
        home.path().join("trust.yaml"),
        format!(
            "trust:\n  - {{ match: \"{}/sandbox/*\", unsigned: allow }}\n",
            reg.addr
        ),
    )
    .unwrap();
    let o = sluice(
        home.path(),
        &["package", "pull", &format!("oci://{theirs}"), "--json"],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let pulled = json(&o);
    assert_eq!(
        pulled["component"].as_str().unwrap(),
        format!("sha256:{}", hex_sha256(&std::fs::read(echo).unwrap()))
    );
    let rule = home.path().join("theirs.yaml");
    std::fs::write(
        &rule,
        format!(
            "rule: theirs\nops:\n  echo: {{ package: \"oci://{theirs}\" }}\nphases:\n  run: [{{ id: hi, op: echo, with: {{ from: wkg }} }}]\n"
        ),
    )
    .unwrap();
    let o = sluice(home.path(), &["lock", rule.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let o = sluice(home.path(), &["run", rule.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
}

fn hex_sha256(bytes: &[u8]) -> String {
    // The same digest the registry and sluice use, computed with the system's sha256sum.
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}
