//! `raxe customer siem ...` and `raxe global siem ...`: dispatch and the small lifecycle
//! commands (enable, disable, remove) live here; each larger stage has its own file:
//! [`configure`] (arguments to a validated configuration), [`test`] (the connection check),
//! [`show`] (show, list and token masking).

mod configure;
mod show;
mod test;

use anyhow::{Context, Result};

pub use show::describe_state;

use crate::args::{CustomerTarget, GlobalTarget, SiemCommand};
use crate::config_store::{ConfigStore, DestinationRecord, OtherScope, Scope};
use crate::control;
use crate::data_dir::DataDir;
use crate::host::{Host, OpenError};

pub trait Target {
    /// Whether its destinations belong to an MSSP (`--mssp` means something).
    const BY_MSSP: bool;
    fn scope(&self) -> Scope;
    /// Whether `list` under this command shows `scope` (`mssp`: its `--mssp` filter).
    fn lists(scope: &Scope, mssp: Option<&str>) -> bool;
}

impl Target for CustomerTarget {
    const BY_MSSP: bool = true;

    fn scope(&self) -> Scope {
        Scope::Customer {
            mssp_id: self.mssp.clone(),
            customer_id: self.customer.clone(),
        }
    }

    fn lists(scope: &Scope, mssp: Option<&str>) -> bool {
        match scope {
            Scope::Customer { mssp_id, .. } => mssp.is_none_or(|m| m == mssp_id),
            Scope::Global { .. } => false,
        }
    }
}

impl Target for GlobalTarget {
    const BY_MSSP: bool = false;

    fn scope(&self) -> Scope {
        Scope::Global {
            name: self.name.clone(),
        }
    }

    fn lists(scope: &Scope, _: Option<&str>) -> bool {
        matches!(scope, Scope::Global { .. })
    }
}

/// Runs one `siem` subcommand; returns the process exit code.
pub async fn run<T: Target + clap::Args>(data: &DataDir, command: SiemCommand<T>) -> Result<i32> {
    let configs = ConfigStore::new(data.config_dir());
    match command {
        SiemCommand::Configure { target, options } => {
            configure::configure(&configs, target.scope(), &options)
        }
        SiemCommand::Test { target } => test::test(&configs, &target.scope()).await,
        SiemCommand::Show { target, json } => show::show(data, &configs, &target.scope(), json),
        SiemCommand::Disable { target } => set_enabled(&configs, &target.scope(), false),
        SiemCommand::Enable { target } => set_enabled(&configs, &target.scope(), true),
        SiemCommand::Remove { target, drop_queue } => {
            remove(data, &configs, &target.scope(), drop_queue)
        }
        SiemCommand::List { mssp, json } => {
            let mssp = mssp.as_deref();
            if mssp.is_some() && !T::BY_MSSP {
                anyhow::bail!(
                    "--mssp picks customer destinations: use `raxe customer siem list --mssp M`"
                );
            }
            show::list(data, &configs, |scope| T::lists(scope, mssp), json)
        }
    }
}

fn existing(configs: &ConfigStore, scope: &Scope) -> Result<DestinationRecord> {
    configs.get(scope)?.ok_or_else(|| not_configured(scope))
}

fn not_configured(scope: &Scope) -> anyhow::Error {
    anyhow::anyhow!(
        "no SIEM is configured for {}; configure one with `raxe {} siem configure`",
        scope.describe(),
        match scope {
            Scope::Customer { .. } => "customer",
            Scope::Global { .. } => "global",
        }
    )
}

fn set_enabled(configs: &ConfigStore, scope: &Scope, enabled: bool) -> Result<i32> {
    let mut record = existing(configs, scope)?;
    record.config.enabled = enabled;
    configs.put(&record)?;
    println!(
        "✓ SIEM for {} {}",
        scope.describe(),
        if enabled {
            "enabled"
        } else {
            "disabled (events keep accumulating in its queue)"
        }
    );
    Ok(0)
}

fn remove(data: &DataDir, configs: &ConfigStore, scope: &Scope, drop_queue: bool) -> Result<i32> {
    let mut kept_only = false;
    let id = match configs.get(scope) {
        Ok(Some(record)) => record.id(),
        // Removed before, its queue kept: `--drop-queue` is how `stats` says to delete it.
        Ok(None) if drop_queue && has_kept_queue(data, &scope.destination_id()) => {
            kept_only = true;
            scope.destination_id()
        }
        Ok(None) => return Err(not_configured(scope)),
        Err(e) if e.is::<OtherScope>() => return Err(e),
        // A damaged file must not stop its own removal.
        Err(e) => {
            eprintln!("⚠ its configuration cannot be read ({e:#}); removing it anyway");
            scope.destination_id()
        }
    };
    if drop_queue {
        // Dropping needs the queues: open them, or ask the service that holds them.
        match Host::open(data.clone()) {
            Ok(host) => {
                configs.remove(scope)?;
                control::drop_queue(&host, &id)?;
            }
            Err(OpenError::InUse(_)) => {
                // The service stops the destination and deletes its queue first: should that
                // fail, nothing changed.
                control::call(data, &control::Request::DropQueue { destination: id })
                    .context("nothing was removed")?;
                configs.remove(scope)?;
            }
            Err(OpenError::Other(e)) => return Err(e),
        }
        if kept_only {
            println!("✓ Deleted the kept queue of {}", scope.describe());
        } else {
            println!(
                "✓ Removed the SIEM for {} and deleted its queued events",
                scope.describe()
            );
        }
    } else {
        configs.remove(scope)?;
        println!(
            "✓ Removed the SIEM for {}; its undelivered events are kept and delivered if it is configured again",
            scope.describe()
        );
    }
    Ok(0)
}

/// Whether a destination removed before (no configuration) still has its queue kept.
fn has_kept_queue(data: &DataDir, id: &str) -> bool {
    crate::commands::live_stats(data).is_ok_and(|(stats, _)| {
        stats["kept_queues"]
            .as_array()
            .is_some_and(|kept| kept.iter().any(|k| k["id"] == id))
    })
}
