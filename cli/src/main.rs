use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use herald_cli::metallb::{self, Configuration, Object};
use herald_cli::migrate::{self, Cluster, Migration};
use herald_cli::{pools, services, status, table, why};
use herald_core::selector::Labels;
use herald_crds::{BGPAdvertisement, BGPPeer, IPAddressPool, L2Advertisement};
use herald_speaker::heartbeat;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace, Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Config, ResourceExt};

/// Herald's addresses, explained from what the API server holds.
#[derive(Parser, Debug)]
#[command(name = "kubectl-herald", bin_name = "kubectl herald", version)]
struct Args {
    /// Path to the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).
    #[arg(long, global = true, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use (default: its current context).
    #[arg(long, global = true)]
    context: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The cluster on one screen: pools, advertisements, a speaker per node, and the Services
    /// in trouble, most urgent first.
    Status {
        #[arg(short, long, value_enum)]
        output: Option<Output>,
    },
    /// Every LoadBalancer Service: its addresses, pool, the node and interfaces answering for
    /// it, and what is wrong when something is.
    Services {
        /// The namespace to show (default: the kubeconfig context's).
        #[arg(short, long)]
        namespace: Option<String>,

        /// Show every namespace.
        #[arg(short = 'A', long, conflicts_with = "namespace")]
        all_namespaces: bool,

        #[arg(short, long, value_enum)]
        output: Option<Output>,
    },
    /// The whole story of one Service: which rule chose its pool and address, whom it shares
    /// with, which nodes may announce it and why each other node may not, which node answers,
    /// and its recent Events.
    Why {
        /// The Service's name.
        service: String,

        /// Its namespace (default: the kubeconfig context's).
        #[arg(short, long)]
        namespace: Option<String>,

        #[arg(short, long, value_enum)]
        output: Option<Output>,
    },
    /// Each pool's use per family, its state, and the Services holding its addresses.
    Pools {
        #[arg(short, long, value_enum)]
        output: Option<Output>,
    },
    /// Moves another load balancer's configuration over to Herald.
    #[command(subcommand)]
    Migrate(Migrate),
}

/// `-o`: a wider table, or the views as data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Wide,
    Json,
    Yaml,
}

#[derive(Subcommand, Debug)]
enum Migrate {
    /// Converts MetalLB's IPAddressPools, L2Advertisements, BGPPeers, BGPAdvertisements and
    /// BFDProfiles (and the `config` ConfigMap of MetalLB before 0.13) into Herald's. Prints
    /// them as YAML on stdout and a table of what maps on stderr; `--apply` applies them.
    /// Services keep their addresses: Herald's controller keeps an address a Service already
    /// shows when a pool holds it.
    Metallb {
        /// Apply the objects (server-side apply) instead of printing them.
        #[arg(long, conflicts_with = "dry_run")]
        apply: bool,

        /// Print the objects and change nothing (the default).
        #[arg(long)]
        dry_run: bool,

        /// The namespace MetalLB runs in, where its legacy `config` ConfigMap is.
        #[arg(long, default_value = "metallb-system")]
        metallb_namespace: String,

        /// The `--load-balancer-class` Herald's controller is given, if any.
        #[arg(long)]
        load_balancer_class: Option<String>,

        /// The namespace Herald runs in, where the speakers read BGP password Secrets.
        #[arg(long, default_value = "herald-system")]
        herald_namespace: String,
    },
}

const FIELD_MANAGER: &str = "kubectl-herald";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let client = client(args.kubeconfig.as_deref(), args.context.as_deref()).await?;
    match args.command {
        Command::Services {
            namespace,
            all_namespaces,
            output,
        } => {
            let namespace = (!all_namespaces)
                .then(|| namespace.unwrap_or_else(|| client.default_namespace().to_owned()));
            let services = match &namespace {
                Some(ns) => Api::<Service>::namespaced(client.clone(), ns),
                None => Api::<Service>::all(client.clone()),
            }
            .list(&ListParams::default())
            .await
            .context("listing Services")?
            .items;
            let pools = list_pools(&client).await?;
            let views = services::views(&services, &pools);
            match output {
                Some(Output::Json) => println!("{}", serde_json::to_string_pretty(&views)?),
                Some(Output::Yaml) => print!("{}", serde_yaml::to_string(&views)?),
                wide => {
                    if views.is_empty() {
                        eprintln!("No LoadBalancer Services found.");
                    } else {
                        print!(
                            "{}",
                            services::render(&views, all_namespaces, wide == Some(Output::Wide))
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { output } => {
            let all = ListParams::default();
            let pools = list_pools(&client).await?;
            let services = Api::<Service>::all(client.clone())
                .list(&all)
                .await
                .context("listing Services")?
                .items;
            let service_views = services::views(&services, &pools);
            let advertisements = Api::<L2Advertisement>::all(client.clone())
                .list(&all)
                .await
                .context("listing Herald's L2Advertisements")?
                .items;
            let (nodes, leases) = nodes_and_heartbeats(&client).await?;
            let status = status::status(
                pools::views(&pools, &service_views),
                &advertisements,
                &nodes,
                &leases,
                &service_views,
                Timestamp::now(),
            );
            match output {
                Some(Output::Json) => println!("{}", serde_json::to_string_pretty(&status)?),
                Some(Output::Yaml) => print!("{}", serde_yaml::to_string(&status)?),
                _ => print!("{}", status::render(&status)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Pools { output } => {
            let pools = list_pools(&client).await?;
            let services = Api::<Service>::all(client.clone())
                .list(&ListParams::default())
                .await
                .context("listing Services")?
                .items;
            let views = pools::views(&pools, &services::views(&services, &pools));
            match output {
                Some(Output::Json) => println!("{}", serde_json::to_string_pretty(&views)?),
                Some(Output::Yaml) => print!("{}", serde_yaml::to_string(&views)?),
                _ if views.is_empty() => eprintln!("No IPAddressPools found."),
                _ => print!("{}", pools::render(&views)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Why {
            service,
            namespace,
            output,
        } => {
            let namespace = namespace.unwrap_or_else(|| client.default_namespace().to_owned());
            let why = read_why(&client, &namespace, &service).await?;
            match output {
                Some(Output::Json) => println!("{}", serde_json::to_string_pretty(&why)?),
                Some(Output::Yaml) => print!("{}", serde_yaml::to_string(&why)?),
                _ => print!("{}", why::render(&why, Timestamp::now())),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate(Migrate::Metallb {
            apply,
            dry_run: _,
            metallb_namespace,
            load_balancer_class,
            herald_namespace,
        }) => {
            let config = read_metallb(&client, &metallb_namespace).await?;
            let mut cluster = read_cluster(&client, load_balancer_class).await?;
            // Only a legacy peer's plain-text password needs them: listing Secrets takes a
            // permission that a migration without one should not need.
            if config
                .legacy
                .as_ref()
                .is_some_and(|(_, _, legacy)| legacy.peers.iter().any(|p| p.password.is_some()))
            {
                cluster.secrets = secret_names(&client, &herald_namespace).await?;
            }
            cluster.herald_namespace = herald_namespace;
            let migration = match migrate::migrate(&config, &cluster) {
                Ok(migration) => migration,
                Err(refusals) => {
                    eprintln!("refused: the migration would not be safe:");
                    for refusal in refusals {
                        eprintln!("  - {refusal}");
                    }
                    return Ok(ExitCode::FAILURE);
                }
            };
            eprint!("{}", table(&migration));
            if apply {
                apply_migration(&client, &migration).await?;
            } else {
                print!("{}", yaml(&migration)?);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn client(
    kubeconfig: Option<&std::path::Path>,
    context: Option<&str>,
) -> anyhow::Result<Client> {
    let options = KubeConfigOptions {
        context: context.map(str::to_owned),
        ..KubeConfigOptions::default()
    };
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("reading kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(file, &options).await
        }
        None => Config::from_kubeconfig(&options).await,
    }
    .context("loading the kubeconfig (--kubeconfig, --context)")?;
    Client::try_from(config).context("making an API client")
}

/// Every object of a MetalLB kind, in every namespace; none when its CRD is not installed.
async fn list_metallb(
    client: &Client,
    version: &str,
    kind: &str,
) -> anyhow::Result<Vec<DynamicObject>> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("metallb.io", version, kind));
    match Api::<DynamicObject>::all_with(client.clone(), &resource)
        .list(&ListParams::default())
        .await
    {
        Ok(list) => Ok(list.items),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("listing MetalLB's {kind}s")),
    }
}

fn object<T: serde::de::DeserializeOwned>(
    kind: &str,
    o: DynamicObject,
) -> anyhow::Result<Object<T>> {
    let (namespace, name) = (o.namespace().unwrap_or_default(), o.name_any());
    let spec = o.data.get("spec").cloned().unwrap_or_default();
    Ok(Object {
        spec: serde_json::from_value(spec)
            .with_context(|| format!("reading the spec of {kind} {namespace}/{name}"))?,
        labels: o.labels().clone(),
        namespace,
        name,
    })
}

async fn read_metallb(client: &Client, namespace: &str) -> anyhow::Result<Configuration> {
    let mut config = Configuration::default();
    for o in list_metallb(client, "v1beta1", "IPAddressPool").await? {
        config.pools.push(object("IPAddressPool", o)?);
    }
    for o in list_metallb(client, "v1beta1", "L2Advertisement").await? {
        config.l2_advertisements.push(object("L2Advertisement", o)?);
    }
    for o in list_metallb(client, "v1beta2", "BGPPeer").await? {
        config.bgp_peers.push(object("BGPPeer", o)?);
    }
    for o in list_metallb(client, "v1beta1", "BGPAdvertisement").await? {
        config
            .bgp_advertisements
            .push(object("BGPAdvertisement", o)?);
    }
    for o in list_metallb(client, "v1beta1", "BFDProfile").await? {
        config.bfd_profiles.push(object("BFDProfile", o)?);
    }
    for o in list_metallb(client, "v1beta1", "Community").await? {
        config.communities.push(object("Community", o)?);
    }
    let legacy = Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get_opt("config")
        .await
        .with_context(|| format!("reading ConfigMap {namespace}/config"))?;
    if let Some(text) = legacy
        .and_then(|c| c.data)
        .and_then(|d| d.get("config").cloned())
    {
        let parsed = metallb::parse_legacy(&text).with_context(|| {
            format!("ConfigMap {namespace}/config: key \"config\" is not MetalLB's configuration")
        })?;
        config.legacy = Some((namespace.to_owned(), "config".to_owned(), parsed));
    }
    Ok(config)
}

async fn read_cluster(client: &Client, class: Option<String>) -> anyhow::Result<Cluster> {
    Ok(Cluster {
        pools: list_pools(client).await?,
        advertisements: list_all(client, "L2Advertisements").await?,
        bgp_peers: list_all(client, "BGPPeers").await?,
        bgp_advertisements: list_all(client, "BGPAdvertisements").await?,
        bfd_profiles: list_all(client, "BFDProfiles").await?,
        services: list_services(client).await?,
        namespaces: namespace_labels(client).await?,
        class,
        ..Cluster::default()
    })
}

async fn list_services(client: &Client) -> anyhow::Result<Vec<Service>> {
    Ok(Api::<Service>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("listing Services")?
        .items)
}

/// Each namespace's labels, for pools' `serviceAllocation.namespaceSelectors`.
async fn namespace_labels(client: &Client) -> anyhow::Result<BTreeMap<String, Labels>> {
    Ok(Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("listing Namespaces")?
        .items
        .into_iter()
        .map(|n| (n.name_any(), n.labels().clone()))
        .collect())
}

/// The names of the Secrets in `namespace` (their metadata only: no password is read).
async fn secret_names(client: &Client, namespace: &str) -> anyhow::Result<BTreeSet<String>> {
    Ok(Api::<Secret>::namespaced(client.clone(), namespace)
        .list_metadata(&ListParams::default())
        .await
        .with_context(|| {
            format!(
                "listing the Secrets in {namespace} (a legacy BGP peer's password must be in \
                 one there; --herald-namespace names Herald's namespace)"
            )
        })?
        .items
        .into_iter()
        .map(|s| s.name_any())
        .collect())
}

fn table(migration: &Migration) -> String {
    let rows: Vec<Vec<String>> = migration
        .rows
        .iter()
        .map(|r| {
            vec![
                r.source.clone(),
                r.result.clone(),
                r.outcome.to_string(),
                r.note.clone(),
            ]
        })
        .collect();
    table::render(&["SOURCE", "RESULT", "OUTCOME", "NOTE"], &rows)
}

/// Reads what the story of one Service needs, and tells it.
async fn read_why(client: &Client, namespace: &str, name: &str) -> anyhow::Result<why::Why> {
    let service = Api::<Service>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .with_context(|| format!("reading Service {namespace}/{name}"))?
        .with_context(|| {
            format!("Service {namespace}/{name} not found: check its name and -n NAMESPACE")
        })?;
    let type_ = service.spec.as_ref().and_then(|s| s.type_.clone());
    if type_.as_deref() != Some("LoadBalancer") {
        anyhow::bail!(
            "Service {namespace}/{name} is of type {}, not LoadBalancer: Herald gives it no \
             address",
            type_.unwrap_or_else(|| "ClusterIP".to_owned())
        );
    }
    let pools = list_pools(client).await?;
    let advertisements: Vec<L2Advertisement> = list_all(client, "L2Advertisements").await?;
    let services = list_services(client).await?;
    let namespaces = namespace_labels(client).await?;
    // Layer 2 is told without them: a cluster may run without Herald's BGP.
    let bgp_peers: Result<Vec<BGPPeer>, String> = list_if_served(client, "BGPPeers").await?;
    let bgp_advertisements: Result<Vec<BGPAdvertisement>, String> =
        list_if_served(client, "BGPAdvertisements").await?;
    // The Service and those sharing an address with it: only their endpoints decide where
    // its addresses are announced.
    let addresses = herald_crds::service_status::addresses(&service);
    let group: Vec<&Service> = services
        .iter()
        .filter(|s| {
            (s.namespace().as_deref() == Some(namespace) && s.name_any() == name)
                || herald_crds::service_status::addresses(s)
                    .iter()
                    .any(|ip| addresses.contains(ip))
        })
        .collect();
    let mut slices = Vec::new();
    for member in group {
        let member_namespace = member.namespace().unwrap_or_default();
        let selector = format!("kubernetes.io/service-name={}", member.name_any());
        slices.extend(
            Api::<EndpointSlice>::namespaced(client.clone(), &member_namespace)
                .list(&ListParams::default().labels(&selector))
                .await
                .with_context(|| {
                    format!(
                        "listing the EndpointSlices of Service {member_namespace}/{}",
                        member.name_any()
                    )
                })?
                .items,
        );
    }
    let (nodes, leases) = nodes_and_heartbeats(client).await?;
    let uid = service.metadata.uid.clone();
    let events: Vec<Event> = Api::<Event>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().fields(&format!(
            "involvedObject.kind=Service,involvedObject.name={name}"
        )))
        .await
        .with_context(|| format!("listing the Events of Service {namespace}/{name}"))?
        .items
        .into_iter()
        // Not those of an earlier Service of the same name.
        .filter(|e| uid.is_none() || e.involved_object.uid == uid)
        .collect();
    let objects = why::Objects {
        services: &services,
        pools: &pools,
        advertisements: &advertisements,
        namespaces: &namespaces,
        nodes: &nodes,
        slices: &slices,
        leases: &leases,
        events: &events,
        bgp: match (&bgp_peers, &bgp_advertisements) {
            (Ok(peers), Ok(advertisements)) => Ok(why::Bgp {
                peers,
                advertisements,
            }),
            (Err(why), _) | (_, Err(why)) => Err(why.clone()),
        },
    };
    Ok(why::why(&service, &objects, Timestamp::now()))
}

/// The Nodes, and the speakers' heartbeat Leases that tell which speakers are alive.
async fn nodes_and_heartbeats(client: &Client) -> anyhow::Result<(Vec<Node>, Vec<Lease>)> {
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("listing Nodes")?
        .items;
    let leases = Api::<Lease>::all(client.clone())
        .list(&ListParams::default().labels(&format!("{}=true", heartbeat::LABEL)))
        .await
        .context("listing the speakers' heartbeat Leases")?
        .items;
    Ok((nodes, leases))
}

/// Every object of a cluster-scoped Herald kind.
async fn list_all<K>(client: &Client, kinds: &str) -> anyhow::Result<Vec<K>>
where
    K: kube::Resource<Scope = kube::core::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    list_if_served(client, kinds)
        .await?
        .map_err(anyhow::Error::msg)
}

/// Every object of a cluster-scoped Herald kind; or, when the API server does not serve the
/// kind (its CRD is not installed) or this user may not list it, why not.
async fn list_if_served<K>(client: &Client, kinds: &str) -> anyhow::Result<Result<Vec<K>, String>>
where
    K: kube::Resource<Scope = kube::core::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match Api::<K>::all(client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(list) => Ok(Ok(list.items)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Err(format!(
            "the API server does not serve {kinds} (are Herald's CRDs installed?)"
        ))),
        Err(kube::Error::Api(status)) if status.code == 403 => Ok(Err(format!(
            "this user may not list {kinds}: {}",
            status.message
        ))),
        Err(e) => Err(e).with_context(|| format!("listing Herald's {kinds}")),
    }
}

async fn list_pools(client: &Client) -> anyhow::Result<Vec<IPAddressPool>> {
    Ok(Api::<IPAddressPool>::all(client.clone())
        .list(&ListParams::default())
        .await
        .context("listing Herald's IPAddressPools (are Herald's CRDs installed?)")?
        .items)
}

fn yaml(migration: &Migration) -> anyhow::Result<String> {
    let mut out = String::new();
    for pool in &migration.pools {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(pool)?);
    }
    for advertisement in &migration.advertisements {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(advertisement)?);
    }
    for peer in &migration.bgp_peers {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(peer)?);
    }
    for advertisement in &migration.bgp_advertisements {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(advertisement)?);
    }
    for profile in &migration.bfd_profiles {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(profile)?);
    }
    Ok(out)
}

async fn apply_migration(client: &Client, migration: &Migration) -> anyhow::Result<()> {
    let params = PatchParams::apply(FIELD_MANAGER);
    for pool in &migration.pools {
        apply(client, &params, pool).await?;
    }
    for advertisement in &migration.advertisements {
        apply(client, &params, advertisement).await?;
    }
    // Profiles before the peers that name them.
    for profile in &migration.bfd_profiles {
        apply(client, &params, profile).await?;
    }
    for peer in &migration.bgp_peers {
        apply(client, &params, peer).await?;
    }
    for advertisement in &migration.bgp_advertisements {
        apply(client, &params, advertisement).await?;
    }
    Ok(())
}

/// Server-side applies one cluster-scoped object, and says so as kubectl does.
async fn apply<K>(client: &Client, params: &PatchParams, object: &K) -> anyhow::Result<()>
where
    K: kube::Resource<Scope = kube::core::ClusterResourceScope>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let name = object.name_any();
    let kind = K::kind(&K::DynamicType::default()).to_lowercase();
    let group = K::group(&K::DynamicType::default()).into_owned();
    Api::<K>::all(client.clone())
        .patch(&name, params, &Patch::Apply(object))
        .await
        .with_context(|| format!("applying {kind}.{group} {name}"))?;
    eprintln!("{kind}.{group}/{name} applied");
    Ok(())
}
