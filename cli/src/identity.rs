//! Who signs the calls: a PEM file, a named dfx or icp-cli identity, or nobody (anonymous,
//! enough for the public reads: `status`, `metrics`).
//!
//! Where the tools keep identities:
//! - dfx: `$DFX_CONFIG_ROOT/.config/dfx/identity/NAME/identity.pem` (`DFX_CONFIG_ROOT`
//!   defaults to the home folder). Password-protected (`identity.pem.encrypted`), keyring and
//!   HSM identities are refused with a hint: this CLI does not decrypt keys.
//! - icp-cli: `<dir>/identity_list.json` names the identities and `<dir>/keys/NAME.pem` holds
//!   plaintext keys, where `<dir>` is `$ICP_HOME/identity`, or the platform's data folder:
//!   `$XDG_DATA_HOME/icp-cli/identity` (default `~/.local/share/icp-cli/identity`) on Linux,
//!   `~/Library/Application Support/org.dfinity.icp-cli/identity` on macOS,
//!   `%APPDATA%\icp-cli\data\identity` on Windows.
//! - `--identity-dir DIR` names the folder explicitly, in either layout.

use crate::errors::CliError;
use candid::Principal;
use ic_agent::identity::{AnonymousIdentity, BasicIdentity, Prime256v1Identity, Secp256k1Identity};
use ic_agent::Identity;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct LoadedIdentity {
    pub identity: Arc<dyn Identity>,
    pub principal: Principal,
    /// Where it came from, for messages.
    pub source: String,
}

impl LoadedIdentity {
    fn new(identity: Arc<dyn Identity>, source: String) -> Result<LoadedIdentity, CliError> {
        let principal = identity
            .sender()
            .map_err(|e| CliError::usage(format!("{source}: {e}")))?;
        Ok(LoadedIdentity {
            identity,
            principal,
            source,
        })
    }

    pub fn anonymous() -> LoadedIdentity {
        LoadedIdentity {
            identity: Arc::new(AnonymousIdentity),
            principal: Principal::anonymous(),
            source: "anonymous".into(),
        }
    }
}

/// How the user chose the identity.
pub struct Choice<'a> {
    pub pem: Option<&'a Path>,
    pub name: Option<&'a str>,
    pub dir: Option<&'a Path>,
}

pub fn load(choice: &Choice<'_>) -> Result<LoadedIdentity, CliError> {
    if let Some(path) = choice.pem {
        let bytes = std::fs::read(path)
            .map_err(|e| CliError::usage(format!("cannot read {}: {e}", path.display())))?;
        let origin = path.display().to_string();
        return LoadedIdentity::new(from_pem(&bytes, &origin)?, origin);
    }
    let Some(name) = choice.name else {
        return Ok(LoadedIdentity::anonymous());
    };
    if name == "anonymous" {
        return Ok(LoadedIdentity::anonymous());
    }
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(CliError::usage(format!("`{name}` is not an identity name")));
    }
    if let Some(dir) = choice.dir {
        let dfx = from_dfx_dir(dir, name)?;
        let icp = from_icp_dir(dir, name)?;
        return match (dfx, icp) {
            (Some(i), _) | (None, Some(i)) => Ok(i),
            (None, None) => Err(CliError::usage(format!(
                "no identity `{name}` in {} (looked for {} and {})",
                dir.display(),
                dir.join(name).join("identity.pem").display(),
                dir.join("keys").join(format!("{name}.pem")).display()
            ))),
        };
    }
    let dfx_dir = dfx_identity_dir();
    let icp_dir = icp_identity_dir();
    let dfx = match &dfx_dir {
        Some(d) => from_dfx_dir(d, name)?,
        None => None,
    };
    let icp = match &icp_dir {
        Some(d) => from_icp_dir(d, name)?,
        None => None,
    };
    match (dfx, icp) {
        (Some(a), Some(b)) if a.principal != b.principal => Err(CliError::usage(format!(
            "identity `{name}` exists in dfx ({}, principal {}) and in icp-cli ({}, principal {}) \
             with different keys: choose one with --identity-pem FILE or --identity-dir DIR",
            a.source, a.principal, b.source, b.principal
        ))),
        (Some(i), _) | (None, Some(i)) => Ok(i),
        (None, None) => Err(CliError::usage(format!(
            "no identity `{name}`: looked in dfx's folder ({}) and icp-cli's ({}); use \
             --identity-dir DIR or --identity-pem FILE",
            dfx_dir.map_or("unknown: no home folder".into(), |d| d
                .display()
                .to_string()),
            icp_dir.map_or("unknown: no home folder".into(), |d| d
                .display()
                .to_string()),
        ))),
    }
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn home() -> Option<PathBuf> {
    env_path("HOME").or_else(|| env_path("USERPROFILE"))
}

pub fn dfx_identity_dir() -> Option<PathBuf> {
    let root = env_path("DFX_CONFIG_ROOT").or_else(home)?;
    Some(root.join(".config").join("dfx").join("identity"))
}

pub fn icp_identity_dir() -> Option<PathBuf> {
    if let Some(h) = env_path("ICP_HOME") {
        return Some(h.join("identity"));
    }
    if cfg!(target_os = "macos") {
        return Some(
            home()?
                .join("Library/Application Support/org.dfinity.icp-cli")
                .join("identity"),
        );
    }
    if cfg!(windows) {
        return Some(env_path("APPDATA")?.join("icp-cli\\data\\identity"));
    }
    let data = env_path("XDG_DATA_HOME").or_else(|| Some(home()?.join(".local/share")))?;
    Some(data.join("icp-cli").join("identity"))
}

/// dfx layout: `DIR/NAME/identity.pem` (with `identity.json` saying how it is stored).
fn from_dfx_dir(dir: &Path, name: &str) -> Result<Option<LoadedIdentity>, CliError> {
    let folder = dir.join(name);
    let pem = folder.join("identity.pem");
    if pem.is_file() {
        let bytes = std::fs::read(&pem)
            .map_err(|e| CliError::usage(format!("cannot read {}: {e}", pem.display())))?;
        let origin = format!("dfx identity `{name}` ({})", pem.display());
        return LoadedIdentity::new(from_pem(&bytes, &origin)?, origin).map(Some);
    }
    if !folder.is_dir() {
        return Ok(None);
    }
    let refuse = |how: &str| {
        Err(CliError::usage(format!(
            "dfx identity `{name}` is {how}, which this CLI does not read: pass --identity-pem \
             with a PEM file of that key instead (`dfx identity export {name}` prints it)"
        )))
    };
    if folder.join("identity.pem.encrypted").is_file() {
        return refuse("password-protected");
    }
    let config = std::fs::read_to_string(folder.join("identity.json")).unwrap_or_default();
    if config.contains("keyring_identity_suffix") {
        return refuse("kept in the system keyring");
    }
    if config.contains("\"hsm\"") {
        return refuse("a hardware (HSM) identity");
    }
    Ok(None)
}

/// icp-cli layout: `DIR/identity_list.json` and `DIR/keys/NAME.pem`.
fn from_icp_dir(dir: &Path, name: &str) -> Result<Option<LoadedIdentity>, CliError> {
    let list_path = dir.join("identity_list.json");
    let key_path = dir.join("keys").join(format!("{name}.pem"));
    let spec = match std::fs::read_to_string(&list_path) {
        Ok(text) => {
            let list: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                CliError::usage(format!("cannot parse {}: {e}", list_path.display()))
            })?;
            list.get("identities").and_then(|i| i.get(name)).cloned()
        }
        Err(_) => None,
    };
    let Some(spec) = spec else {
        return Ok(None);
    };
    let kind = spec.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    let format = spec.get("format").and_then(|k| k.as_str()).unwrap_or("");
    let refuse = |how: &str| {
        Err(CliError::usage(format!(
            "icp-cli identity `{name}` is {how}, which this CLI does not read: pass \
             --identity-pem with a PEM file of that key instead (`icp identity export {name}`)"
        )))
    };
    match (kind, format) {
        ("anonymous", _) => return Ok(Some(LoadedIdentity::anonymous())),
        ("pem", "plaintext") => {}
        ("pem", _) => return refuse("password-protected"),
        ("keyring", _) => return refuse("kept in the system keyring"),
        ("hsm", _) => return refuse("a hardware (HSM) identity"),
        ("internet-identity", _) => return refuse("an Internet Identity delegation"),
        (other, _) => return refuse(&format!("of an unknown kind `{other}`")),
    }
    let bytes = std::fs::read(&key_path)
        .map_err(|e| CliError::usage(format!("cannot read {}: {e}", key_path.display())))?;
    let origin = format!("icp-cli identity `{name}` ({})", key_path.display());
    let loaded = LoadedIdentity::new(from_pem(&bytes, &origin)?, origin)?;
    // The manifest records the principal: a key file that does not match it was replaced.
    if let Some(p) = spec.get("principal").and_then(|p| p.as_str()) {
        if p != loaded.principal.to_text() {
            return Err(CliError::usage(format!(
                "{}: the key's principal {} is not the principal {p} icp-cli recorded for it",
                loaded.source, loaded.principal
            )));
        }
    }
    Ok(Some(loaded))
}

/// An ed25519 (PKCS#8, as dfx and icp-cli write it), secp256k1 (SEC1 as dfx writes it, with
/// its `EC PARAMETERS` block, or PKCS#8) or prime256v1 private key in PEM.
pub fn from_pem(bytes: &[u8], origin: &str) -> Result<Arc<dyn Identity>, CliError> {
    let text = String::from_utf8_lossy(bytes);
    if text.contains("ENCRYPTED PRIVATE KEY") {
        return Err(CliError::usage(format!(
            "{origin}: the key is encrypted; this CLI reads plaintext PEM keys only"
        )));
    }
    if !text.contains("-----BEGIN") {
        return Err(CliError::usage(format!("{origin}: not a PEM file")));
    }
    if let Ok(i) = BasicIdentity::from_pem(bytes) {
        return Ok(Arc::new(i));
    }
    if let Ok(i) = Secp256k1Identity::from_pem(bytes) {
        return Ok(Arc::new(i));
    }
    if let Ok(i) = Prime256v1Identity::from_pem(bytes) {
        return Ok(Arc::new(i));
    }
    Err(CliError::usage(format!(
        "{origin}: not an ed25519, secp256k1 or prime256v1 private key"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    // ic-agent's secp256k1 test key, as dfx writes it (SEC1 with EC PARAMETERS).
    const SECP256K1_SEC1: &str = "-----BEGIN EC PARAMETERS-----
BgUrgQQACg==
-----END EC PARAMETERS-----
-----BEGIN EC PRIVATE KEY-----
MHQCAQEEIAgy7nZEcVHkQ4Z1Kdqby8SwyAiyKDQmtbEHTIM+WNeBoAcGBSuBBAAK
oUQDQgAEgO87rJ1ozzdMvJyZQ+GABDqUxGLvgnAnTlcInV3NuhuPv4O3VGzMGzeB
N3d26cRxD99TPtm8uo2OuzKhSiq6EQ==
-----END EC PRIVATE KEY-----
";
    // The same key in PKCS#8, as icp-cli writes it.
    const SECP256K1_PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIGEAgEAMBAGByqGSM49AgEGBSuBBAAKBG0wawIBAQQgCDLudkRxUeRDhnUp2pvL
xLDICLIoNCa1sQdMgz5Y14GhRANCAASA7zusnWjPN0y8nJlD4YAEOpTEYu+CcCdO
VwidXc26G4+/g7dUbMwbN4E3d3bpxHEP31M+2by6jY67MqFKKroR
-----END PRIVATE KEY-----
";
    // An ed25519 key in PKCS#8 v1 (`dfx identity new` / `openssl genpkey -algorithm ed25519`).
    const ED25519: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIOjB0ZMi+3SQ1+V1ajJj1B1U+W4jpWJLzS+dy6nTZVRW
-----END PRIVATE KEY-----
";

    fn principal(pem: &str) -> Principal {
        from_pem(pem.as_bytes(), "test").unwrap().sender().unwrap()
    }

    #[test]
    fn reads_dfx_and_icp_cli_key_formats() {
        let sec1 = principal(SECP256K1_SEC1);
        assert_eq!(sec1, principal(SECP256K1_PKCS8));
        let ed = principal(ED25519);
        assert_ne!(ed, sec1);
        assert_ne!(ed, Principal::anonymous());
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for bad in [
            "",
            "not a pem",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            let e = from_pem(bad.as_bytes(), "f.pem").err().expect(bad);
            assert_eq!(e.exit, crate::errors::Exit::Usage);
            assert!(e.message.starts_with("f.pem"), "{}", e.message);
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "icjournal-cli-identity-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn finds_identities_in_dfx_and_icp_cli_layouts() {
        let dfx = tmp("dfx");
        std::fs::create_dir_all(dfx.join("ops")).unwrap();
        std::fs::write(dfx.join("ops/identity.pem"), ED25519).unwrap();
        std::fs::create_dir_all(dfx.join("locked")).unwrap();
        std::fs::write(dfx.join("locked/identity.pem.encrypted"), "x").unwrap();
        let choice = |name, dir| Choice {
            pem: None,
            name: Some(name),
            dir: Some(dir),
        };
        assert_eq!(
            load(&choice("ops", &dfx)).unwrap().principal,
            principal(ED25519)
        );
        let e = load(&choice("locked", &dfx)).err().unwrap();
        assert!(e.message.contains("password-protected"), "{}", e.message);
        assert!(load(&choice("nobody", &dfx)).is_err());
        assert!(load(&choice("../ops", &dfx)).is_err());

        let icp = tmp("icp");
        std::fs::create_dir_all(icp.join("keys")).unwrap();
        std::fs::write(icp.join("keys/ops.pem"), SECP256K1_PKCS8).unwrap();
        let p = principal(SECP256K1_PKCS8);
        let list = serde_json::json!({"v": 1, "identities": {
            "ops": {"kind": "pem", "format": "plaintext", "algorithm": "secp256k1", "principal": p.to_text()},
            "kr": {"kind": "keyring", "algorithm": "ed25519", "principal": p.to_text()},
            "wrong": {"kind": "pem", "format": "plaintext", "algorithm": "secp256k1", "principal": "aaaaa-aa"},
        }});
        std::fs::write(icp.join("identity_list.json"), list.to_string()).unwrap();
        std::fs::write(icp.join("keys/wrong.pem"), SECP256K1_PKCS8).unwrap();
        assert_eq!(load(&choice("ops", &icp)).unwrap().principal, p);
        let e = load(&choice("kr", &icp)).err().unwrap();
        assert!(e.message.contains("keyring"), "{}", e.message);
        let e = load(&choice("wrong", &icp)).err().unwrap();
        assert!(e.message.contains("not the principal"), "{}", e.message);
        let _ = std::fs::remove_dir_all(dfx);
        let _ = std::fs::remove_dir_all(icp);
    }
}
