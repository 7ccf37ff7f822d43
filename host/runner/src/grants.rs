//! Capabilities on this host: what a rule's `grants:` turn into for one op call, and the
//! masking of granted secrets in everything the op reports.
//!
//! Declared in the model (`Capability`), checked against the ops' needs by the rule
//! (`Rule::missing_grants`), resolved against the host here, enforced by the runtime.

use std::path::{Path, PathBuf};

use sluice_model::{Capability, Outcome};
use sluice_runtime::{Grants, OpReport};

/// What `caps` grant on this host: secrets from `SLUICE_SECRET_<NAME>` variables, programs
/// resolved on `PATH`, env values, `workspace` as the workspace directory (created), origins.
pub fn host_grants(caps: &[Capability], workspace: &Path) -> Grants {
    let mut g = Grants::none();
    for c in caps {
        match c {
            Capability::Secret(name) => {
                let var = format!("SLUICE_SECRET_{}", name.to_uppercase().replace('-', "_"));
                match std::env::var(&var) {
                    Ok(v) => {
                        g.secrets.insert(name.clone(), v);
                    }
                    Err(_) => {
                        g.unset_secrets
                            .insert(name.clone(), format!("set {var} on the host"));
                    }
                }
            }
            Capability::Exec(p) => {
                if let Some(path) = resolve_program(p) {
                    g.programs.insert(p.clone(), path);
                }
            }
            Capability::Env(name) => {
                if let Ok(v) = std::env::var(name) {
                    g.env.insert(name.clone(), v);
                }
            }
            Capability::Workspace(access) => {
                if std::fs::create_dir_all(workspace).is_ok() {
                    g.workspace = Some((workspace.to_path_buf(), *access));
                }
            }
            Capability::Http(o) => {
                if let Ok(origin) = sluice_model::Origin::parse(o) {
                    g.http.push(origin);
                }
            }
        }
    }
    g
}

/// Grants this host cannot honour: programs granted by name that are not on `PATH`.
pub fn unresolvable(grants: &std::collections::BTreeMap<String, Vec<Capability>>) -> Vec<String> {
    let mut out = Vec::new();
    for (op, caps) in grants {
        for c in caps {
            if let Capability::Exec(program) = c
                && resolve_program(program).is_none()
            {
                out.push(format!("program `{program}` granted to op `{op}` is not on this host's PATH: install it or grant its absolute path"));
            }
        }
    }
    out
}

/// An absolute program path: as given when absolute, else found on `PATH`.
fn resolve_program(program: &str) -> Option<PathBuf> {
    let p = Path::new(program);
    if p.is_absolute() {
        return p.is_file().then(|| p.to_path_buf());
    }
    if program.contains('/') {
        return None;
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(program))
        .find(|c| c.is_file())
}

/// The granted secret values worth masking (four characters or more).
pub fn secret_values(grants: &Grants) -> Vec<String> {
    grants
        .secrets
        .values()
        .filter(|v| v.len() >= 4)
        .cloned()
        .collect()
}

/// Replaces every granted secret value in what the op reported with `***`, before anything of
/// it is stored or printed.
pub fn mask_report(r: &mut OpReport, secrets: &[String]) {
    if secrets.is_empty() {
        return;
    }
    let mask = |s: &mut String| {
        for v in secrets {
            if s.contains(v.as_str()) {
                *s = s.replace(v.as_str(), "***");
            }
        }
    };
    for l in &mut r.logs {
        mask(&mut l.message);
    }
    for a in &mut r.annotations {
        mask(&mut a.title);
        mask(&mut a.body);
    }
    if let Some(p) = &mut r.progress {
        mask(&mut p.message);
    }
    match &mut r.outcome {
        Outcome::Success { output } | Outcome::Warning { output } => mask(output),
        Outcome::Failure(f) => {
            mask(&mut f.message);
            mask(&mut f.details);
        }
        Outcome::Suspend(g) => mask(&mut g.message),
    }
}
