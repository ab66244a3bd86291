"""`etcd-chart sandbox`: a real Kubernetes control plane with a process kubelet, and the release's
pods as local processes running the real etcd.

For one state directory at a time:

- A detached daemon per state dir (`cluster.py`) runs the control plane (`controlplane.py`:
  etcd, kube-apiserver, kube-controller-manager, kube-scheduler, and cert-manager when the release
  asks for certificates), provisions local PersistentVolumes (`provisioner.py`), and plays the
  kubelet of its Nodes (`kubelet.py`): it runs the containers of the Pods bound to them and writes
  their status. It is controlled over a unix socket (`serving.py`). `up` starts it, then
  installs the release with real Helm and the post-renderer (`helmrun.py`; a `--manifest` is
  applied with kubectl) and waits until every pod is Ready and every etcd member votes
  (`voters.py`); what could never run (an image it has no program for, a StorageClass nobody
  serves, a Secret nobody creates: `references.py`) is refused before anything starts. `down`
  stops every process it started, even when the daemon died (their PIDs are recorded), and keeps
  the volumes unless `--purge`.
- Each pod gets an address of its own in a /24 of 127.0.0.0/8 chosen per state dir, and each of
  its containers runs in its own mount namespace (`unshare --mount`), where `launch.py`
  bind-mounts the sandbox-wide hosts file over `/etc/hosts` and the pod's volumes at their
  `mountPath`s, then drops to the pod's `runAsUser`/`runAsGroup`/`fsGroup`, so that DNS names,
  paths and file permissions behave as in the cluster.
- Images map to local programs: etcd images to the `etcd`, `etcdctl` and `etcdutl` binaries,
  Python images to a local Python interpreter. Any other image is an error that names it.

What a process kubelet cannot do, and says so:

- The pod network. Every pod shares this machine's network namespace, so a container that
  listens on `0.0.0.0` or `[::]` (e.g. `--listen-peer-urls=http://0.0.0.0:2380`) has that
  address rewritten to its pod address; a listener on `127.0.0.1`/`localhost` cannot be given to
  each pod separately and is an error, as are loopback or wildcard `listen-*` keys in the chart's
  etcd configuration file (`listen.localhost: true`).
- exec and grpc probes, lifecycle hooks, hostNetwork/hostPID/hostIPC, hostPath and other volume
  types than emptyDir, configMap, secret, projected, downwardAPI, persistentVolumeClaim and
  volumeClaimTemplates; bare Pods, DaemonSets and ReplicaSets: each is an error naming the object
  and field. Service environment variables (`enableServiceLinks`) are not set. (CronJobs run:
  the real controller manager makes their Jobs, on schedule or `kubectl create job --from`.)
- Time is compressed where waiting teaches nothing: restart back-off 1 s doubling to 10 s,
  termination grace capped at 10 s, startup and readiness probes tried every 0.1 s until they
  first pass (see `runtime.py`).
"""
