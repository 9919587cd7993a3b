//! The Helm chart (`chart/`), rendered without helm (none installs here): `chart/test/render.go`
//! renders the templates with Go's text/template, the engine Helm uses, and the few Helm
//! functions the chart calls. Every manifest must parse into the typed `k8s-openapi` resource
//! it declares and serialize back to the same object (no unknown or misspelled field, no wrong
//! type); the sidecar's args must be accepted by `etcdbrctl`'s own flag parsing; the Leases,
//! the Role and the mounted etcd configuration must be what the sidecar needs.

use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::common::bin;

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../chart")
}

/// The chart's values.yaml as JSON, changed by `edit`.
fn values(edit: impl FnOnce(&mut Value)) -> Value {
    let text = std::fs::read_to_string(chart_dir().join("values.yaml")).unwrap();
    let mut v: Value = serde_saphyr::from_str(&text).unwrap();
    edit(&mut v);
    v
}

/// The manifests the chart renders for `values`.
fn render(values: &Value) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("values.json");
    std::fs::write(&file, values.to_string()).unwrap();
    let out = std::process::Command::new("go")
        .arg("run")
        .arg(chart_dir().join("test/render.go"))
        .arg(chart_dir())
        .arg(&file)
        .args(["etcd-main", "shoot--dev"])
        .env("GO111MODULE", "off")
        .env("GOCACHE", dir.path().join("gocache"))
        .output()
        .expect("go (scripts/setup.sh installs golang-go)");
    assert!(
        out.status.success(),
        "render: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.split("\n---")
        .map(|doc| doc.trim_start_matches("---"))
        .filter(|doc| {
            doc.lines()
                .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        })
        .map(|doc| {
            serde_saphyr::from_str::<Value>(doc)
                .unwrap_or_else(|e| panic!("not YAML ({e}):\n{doc}"))
        })
        .collect()
}

/// `doc` as the typed resource, which must serialize back to the same object.
fn typed<T: DeserializeOwned + Serialize>(doc: &Value) -> T {
    let t: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{} does not parse: {e}\n{doc:#}", doc["kind"]));
    let back = serde_json::to_value(&t).unwrap();
    assert_eq!(
        &back, doc,
        "{} has fields or types the API does not",
        doc["kind"]
    );
    t
}

/// Checks every manifest; returns the StatefulSet, the Leases' names and the Role.
fn check_all(docs: &[Value]) -> (StatefulSet, Vec<String>, Role, ConfigMap) {
    let (mut sts, mut leases, mut role, mut cm) = (None, Vec::new(), None, None);
    for doc in docs {
        match doc["kind"].as_str().unwrap() {
            "StatefulSet" => sts = Some(typed::<StatefulSet>(doc)),
            "Lease" => {
                let l = typed::<Lease>(doc);
                leases.push(l.metadata.name.unwrap());
            }
            "Role" => role = Some(typed::<Role>(doc)),
            "RoleBinding" => drop(typed::<RoleBinding>(doc)),
            "ServiceAccount" => drop(typed::<ServiceAccount>(doc)),
            "Service" => drop(typed::<Service>(doc)),
            "ConfigMap" => cm = Some(typed::<ConfigMap>(doc)),
            other => panic!("unexpected kind {other}"),
        }
        assert_eq!(doc["metadata"]["namespace"], "shoot--dev", "{doc}");
    }
    (sts.unwrap(), leases, role.unwrap(), cm.unwrap())
}

fn sidecar_args(sts: &StatefulSet) -> Vec<String> {
    let spec = sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let c = spec
        .containers
        .iter()
        .find(|c| c.name == "backup-restore")
        .unwrap();
    c.args.clone().unwrap()
}

/// `etcdbrctl <args> --help` parses every argument before the help (an unknown flag or a bad
/// value fails it).
fn assert_accepted(args: &[String]) {
    let out = bin().args(args).arg("--help").output().unwrap();
    assert!(
        out.status.success(),
        "etcdbrctl refuses the chart's args {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_default_chart_renders_valid_manifests_and_a_sidecar_etcdbrctl_accepts() {
    let docs = render(&values(|_| {}));
    let (sts, leases, role, cm) = check_all(&docs);
    let args = sidecar_args(&sts);
    assert_eq!(args[0], "server");
    assert_accepted(&args);
    for flag in [
        "--enable-snapshot-lease-renewal=true",
        "--full-snapshot-lease-name=etcd-main-full-snap",
        "--delta-snapshot-lease-name=etcd-main-delta-snap",
        "--enable-member-lease-renewal=true",
        "--storage-provider=S3",
        "--data-dir=/var/etcd/data/new.etcd",
        "--use-etcd-wrapper=true",
    ] {
        assert!(args.iter().any(|a| a == flag), "{flag} missing: {args:?}");
    }
    // The Leases the sidecar renews exist (it never creates them): snapshot Leases and one per
    // member, named as the pods (POD_NAME).
    assert_eq!(
        leases,
        ["etcd-main-full-snap", "etcd-main-delta-snap", "etcd-main-0"]
    );
    // The Role is druid's: no create on Leases.
    let lease_rule = role
        .rules
        .unwrap()
        .into_iter()
        .find(|r| r.resources.as_deref() == Some(&["leases".to_owned()][..]))
        .unwrap();
    assert!(!lease_rule.verbs.contains(&"create".to_owned()));
    assert!(lease_rule.verbs.contains(&"patch".to_owned()));
    // The etcd configuration in druid's shape: URLs as maps from member name to lists.
    let conf = &cm.data.unwrap()["etcd.conf.yaml"];
    let conf: Value = serde_saphyr::from_str(conf).unwrap();
    assert_eq!(conf["quota-backend-bytes"], json!(8_589_934_592_i64));
    assert_eq!(
        conf["initial-advertise-peer-urls"]["etcd-main-0"][0],
        "http://etcd-main-0.etcd-main-peer.shoot--dev.svc:2380"
    );
    assert_eq!(
        conf["initial-cluster"],
        "etcd-main-0=http://etcd-main-0.etcd-main-peer.shoot--dev.svc:2380"
    );
    // The credentials as druid mounts them for S3.
    let spec = sts.spec.unwrap().template.spec.unwrap();
    let c = spec
        .containers
        .iter()
        .find(|c| c.name == "backup-restore")
        .unwrap();
    let env = c.env.clone().unwrap();
    let var = |n: &str| {
        env.iter()
            .find(|e| e.name == n)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(
        var("AWS_APPLICATION_CREDENTIALS").as_deref(),
        Some("/var/etcd-backup")
    );
    assert_eq!(var("STORAGE_CONTAINER").as_deref(), Some("etcd-backups"));
    assert_eq!(spec.security_context.unwrap().run_as_user, Some(65532));
}

#[test]
fn every_provider_three_members_tls_and_no_leases_render_too() {
    for provider in ["Local", "S3", "ABS", "GCS", "Swift", "OSS", "ECS", "OCS"] {
        let docs = render(&values(|v| {
            v["backup"]["storageProvider"] = json!(provider);
            v["replicas"] = json!(3);
            v["backup"]["tlsSecretName"] = json!("etcdbr-server-tls");
            v["backup"]["garbageCollectionPolicy"] = json!("Exponential");
        }));
        let (sts, leases, _, cm) = check_all(&docs);
        let args = sidecar_args(&sts);
        assert_accepted(&args);
        assert!(
            args.iter()
                .any(|a| a == "--server-cert=/var/etcdbr/ssl/server/tls.crt")
        );
        assert!(
            !args.iter().any(|a| a.starts_with("--max-backups")),
            "{args:?}"
        );
        assert_eq!(
            leases.len(),
            5,
            "{provider}: two snapshot Leases and three member Leases"
        );
        let conf: Value = serde_saphyr::from_str(&cm.data.unwrap()["etcd.conf.yaml"]).unwrap();
        assert_eq!(
            conf["initial-cluster"].as_str().unwrap().split(',').count(),
            3
        );
    }
    let docs = render(&values(|v| v["backup"]["leases"]["enabled"] = json!(false)));
    let (sts, leases, _, _) = check_all(&docs);
    assert!(leases.is_empty());
    let args = sidecar_args(&sts);
    assert_accepted(&args);
    assert!(!args.iter().any(|a| a.contains("lease")), "{args:?}");
}

#[test]
fn encryption_keys_mount_from_a_secret_and_their_flags_are_accepted() {
    let docs = render(&values(|v| {
        v["backup"]["encryption"]["secretName"] = json!("etcd-backup-keys");
        v["backup"]["encryption"]["sign"] = json!(true);
    }));
    let (sts, _, _, _) = check_all(&docs);
    let args = sidecar_args(&sts);
    assert_accepted(&args);
    for flag in [
        "--encryption-recipients-file=/var/etcdbr/keys/recipients.txt",
        "--encryption-identity-file=/var/etcdbr/keys/identity.txt",
        "--signing-key-file=/var/etcdbr/keys/signing.pem",
    ] {
        assert!(args.iter().any(|a| a == flag), "{flag}: {args:?}");
    }
    let spec = sts.spec.unwrap().template.spec.unwrap();
    let volume = spec
        .volumes
        .unwrap()
        .into_iter()
        .find(|v| v.name == "encryption-keys")
        .unwrap();
    let secret = volume.secret.unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("etcd-backup-keys"));
    assert_eq!(secret.default_mode, Some(0o400));
    let mounted = spec.containers.iter().any(|c| {
        c.name == "backup-restore"
            && c.volume_mounts.iter().flatten().any(|m| {
                m.name == "encryption-keys"
                    && m.mount_path == "/var/etcdbr/keys"
                    && m.read_only == Some(true)
            })
    });
    assert!(mounted);
    // Off by default: no key flags.
    let (sts, _, _, _) = check_all(&render(&values(|_| {})));
    assert!(!sidecar_args(&sts).iter().any(|a| a.contains("encryption")));
}
