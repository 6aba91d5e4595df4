//! `herald`: the notification service. `herald --help` lists every setting.

use std::process::ExitCode;

use herald_service::Config;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// jemalloc rather than glibc's malloc: every record allocates and frees its event, notification
/// and message across threads, which glibc served with about a fifth of herald's CPU. jemalloc
/// cut CPU per event by about 8% at 3,000 events/s, for 0.6 KiB more RSS per idle socket at 15,000
/// sockets (8.2 KiB; see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let config = Config::load().unwrap_or_else(|error| error.exit());
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = config.worker_threads {
        runtime.worker_threads(usize::from(threads));
    }
    match runtime.build() {
        Ok(runtime) => runtime.block_on(serve(config)),
        Err(error) => {
            eprintln!("herald: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> ExitCode {
    let tracer_provider = match tracer_provider(config.otlp_endpoint.as_deref()) {
        Ok(provider) => provider,
        Err(error) => {
            eprintln!("herald: cannot set up trace export: {error}");
            return ExitCode::FAILURE;
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn"));
    let spans = tracing_opentelemetry::layer().with_tracer(tracer_provider.tracer("herald"));
    let logs = if config.log_format == "text" {
        tracing_subscriber::fmt::layer().boxed()
    } else {
        tracing_subscriber::fmt::layer().json().with_current_span(true).with_span_list(false).boxed()
    };
    tracing_subscriber::registry().with(filter).with(logs).with(spans).init();
    let address = config.listen_address();
    let listener = match tokio::net::TcpListener::bind(address).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("herald: cannot listen on {address}: {error} (choose another address with --listen)");
            return ExitCode::FAILURE;
        }
    };
    let result = herald_service::run(config, listener, terminated()).await;
    // Sends spans still buffered for export.
    let _ = tracer_provider.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("herald: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The OpenTelemetry tracer provider: exporting over OTLP/HTTP when an endpoint is configured,
/// otherwise only giving spans their trace context (which the logs then carry).
fn tracer_provider(endpoint: Option<&str>) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let resource = opentelemetry_sdk::Resource::builder().with_service_name("herald").build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let Some(endpoint) = endpoint else { return Ok(builder.build()) };
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().with_endpoint(endpoint).build()?;
    Ok(builder.with_batch_exporter(exporter).build())
}

/// Completes on SIGTERM or Ctrl-C.
async fn terminated() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
