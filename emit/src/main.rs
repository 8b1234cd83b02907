use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    dora_emit::cli::ignore_empty_settings();
    // Parse errors exit 2 through clap, before anything is sent.
    let cli = dora_emit::cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("dora-emit: cannot start: {e}");
            return ExitCode::from(3);
        }
    };
    match runtime.block_on(dora_emit::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dora-emit: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
