//! `tracecraft ui`: the local trace browser over an existing store.

use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};

use super::CliError;
use crate::{Exit, Global};

/// Arguments of `tracecraft ui`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The store to browse (`sqlite:PATH` or `jsonl:DIR`); default: the configured one
    /// (`storage.url`). It must exist: `ui` never creates a store.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// The port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 6007)]
    port: u16,
    /// The address to listen on. Anything but loopback requires an access token (one is
    /// generated when --token is not given).
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDR")]
    bind: IpAddr,
    /// The access token every request must carry (at least 16 characters of
    /// A-Z a-z 0-9 - _ .); optional on loopback.
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// Offer an "Erase run" action (with a confirmation); read-only otherwise.
    #[arg(long)]
    allow_erase: bool,
    /// Do not open a browser.
    #[arg(long)]
    no_open: bool,
}

/// A random token for a non-loopback address when none was given.
fn generated_token() -> String {
    let a = tracecraft_core::Uuid::new_v4().simple().to_string();
    let b = tracecraft_core::Uuid::new_v4().simple().to_string();
    format!("{a}{b}")
}

/// Asks the desktop to open `url`; a failure only warns.
fn open_browser(url: &str) {
    let (program, args): (&str, Vec<&str>) = if cfg!(target_os = "macos") {
        ("open", vec![url])
    } else if cfg!(windows) {
        ("cmd", vec!["/C", "start", "", url])
    } else {
        ("xdg-open", vec![url])
    };
    match Command::new(program)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(mut child) => {
            std::thread::spawn(move || {
                if !child.wait().is_ok_and(|s| s.success()) {
                    tracing::warn!("could not open a browser; open the URL above");
                }
            });
        }
        Err(e) => tracing::warn!("could not open a browser ({program}: {e}); open the URL above"),
    }
}

pub(crate) fn run(args: Args, global: &Global) -> Result<Exit, CliError> {
    let (store, label, _) = super::open_existing(global, args.store.as_deref())?;
    let token = match args.token {
        None if !args.bind.is_loopback() => Some(generated_token()),
        t => t,
    };
    let server = tracecraft::ui::Server::builder()
        .store(store)
        .bind(SocketAddr::new(args.bind, args.port))
        .token(token)
        .allow_erase(args.allow_erase)
        .build()?;
    let url = server.url();
    println!("tracecraft ui: browsing {label} at {url}");
    println!(
        "{}; press Ctrl-C to stop",
        if args.allow_erase {
            "erasure enabled"
        } else {
            "read-only"
        }
    );
    let handle = server.spawn()?;
    if !args.no_open {
        open_browser(&url);
    }
    handle.wait()?;
    Ok(Exit::Done)
}
