//! `raxe-harness crash --events N --kills K --seed S`: see the crate documentation in
//! `lib.rs` and `harness/README.md`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match raxe_harness::Options::parse(&args) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("raxe-harness: {e}\n\n{}", raxe_harness::USAGE);
            std::process::exit(2);
        }
    };
    if options.command == "disk-full" {
        match raxe_harness::run_disk_full(&options) {
            Ok((text, passed)) => {
                println!("{text}");
                std::process::exit(if passed { 0 } else { 1 });
            }
            Err(e) => {
                eprintln!("raxe-harness: {e:#}");
                std::process::exit(2);
            }
        }
    }
    match raxe_harness::run(&options) {
        Ok(report) => {
            println!("{}", report.render());
            std::process::exit(if report.passed() { 0 } else { 1 });
        }
        Err(e) => {
            eprintln!("raxe-harness: {e:#}");
            std::process::exit(2);
        }
    }
}
