// Package podrunner plays the kubelet's part for one fake Node of a test cluster that has
// an API server and controllers but no kubelet and no container runtime.
//
// The Gateway API conformance suite deploys echo servers as Deployments and waits for
// their pods to be Ready; the gateway under test then sends real traffic to the pods'
// addresses (from EndpointSlices). The runner binds every pending pod to its Node (there
// is no scheduler), runs each pod's containers as local processes in a network namespace
// of its own (the echo servers all listen on :3000, so pods cannot share one), joined by
// a veth pair to one bridge on the host, writes the pod's status back, and on deletion
// stops the processes and finalizes the pod. Images map to local binaries through a
// table; pods with an image the table lacks stay Pending.
//
// Everything it creates on the host (bridge, veths, namespaces) is named with one prefix
// and removed by Close, and by the next run if a run was killed.
package podrunner

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
)

// Program is what runs for a container image.
type Program struct {
	// Path is the local binary.
	Path string
	// Args, when not nil, replace the container's command and args (for a stand-in that
	// does not understand the image's arguments).
	Args []string
	// ReadyPort is the TCP port probed for readiness (the conformance manifests declare
	// no probes, so the runner needs to know where the server listens); 0: the container
	// is ready once started. ReadyPortEnv, when set in the container's environment,
	// overrides it (echo-basic's HTTP_PORT).
	ReadyPort    int
	ReadyPortEnv string
}

// Config configures a Runner.
type Config struct {
	// Client talks to the API server.
	Client kubernetes.Interface
	// NodeName is the fake Node's name.
	NodeName string
	// Prefix starts the name of every network object (bridge, veths, namespaces) and of
	// the lock file; at most 6 bytes, as interface names are limited to 15.
	Prefix string
	// Subnet is the pods' private /24: .1 is the host's address on the bridge (and the
	// Node's), pods get .10 to .250.
	Subnet netip.Prefix
	// Images maps an image reference to the program to run. A key without a tag or
	// digest matches every tag of that repository.
	Images map[string]Program
	// Dir holds one folder per pod (volumes and container output).
	Dir string
	// Logf logs the runner's actions; nil discards them.
	Logf func(format string, args ...any)
}

// Runner is a running fake kubelet; Close stops it.
type Runner struct {
	cfg    Config
	hostIP netip.Addr
	lock   *os.File

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// logServer serves the containers' output to the API server (logs.go), on logPort.
	logServer *http.Server
	logPort   int32
	logDone   chan struct{}

	mu   sync.Mutex
	pods map[types.UID]*pod
	used map[netip.Addr]bool
}

// Start creates the bridge and the Node and starts serving pods. On error everything it
// created is removed again.
func Start(ctx context.Context, cfg Config) (*Runner, error) {
	if cfg.Client == nil || cfg.NodeName == "" || cfg.Prefix == "" || cfg.Dir == "" {
		return nil, errors.New("podrunner: Client, NodeName, Prefix and Dir are required")
	}
	if len(cfg.Prefix) > 6 {
		return nil, fmt.Errorf("podrunner: prefix %q is longer than 6 bytes (interface names are limited to 15)", cfg.Prefix)
	}
	if !cfg.Subnet.Addr().Is4() || cfg.Subnet.Bits() != 24 {
		return nil, fmt.Errorf("podrunner: subnet %s is not an IPv4 /24", cfg.Subnet)
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	r := &Runner{cfg: cfg, hostIP: cfg.Subnet.Masked().Addr().Next(), pods: map[types.UID]*pod{}, used: map[netip.Addr]bool{}}

	// One run per prefix at a time: the lock makes removing a killed run's leftovers safe.
	lockPath := filepath.Join(os.TempDir(), cfg.Prefix+"podrunner.lock")
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("podrunner: opening lock %s: %w", lockPath, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("podrunner: another run holds %s (one run per prefix %q at a time): %w", lockPath, cfg.Prefix, err)
	}
	r.lock = f
	if left := r.removeAllNetworkObjects(ctx); len(left) > 0 {
		cfg.Logf("podrunner: removed leftovers of an earlier run: %s", strings.Join(left, ", "))
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		r.release()
		return nil, fmt.Errorf("podrunner: %w", err)
	}
	if err := r.setUpBridge(ctx); err != nil {
		r.release()
		return nil, fmt.Errorf("podrunner: bridge: %w", err)
	}
	if err := r.startLogServer(); err != nil {
		r.release()
		return nil, fmt.Errorf("podrunner: %w", err)
	}
	if err := r.createNode(ctx); err != nil {
		r.release()
		return nil, fmt.Errorf("podrunner: node %s: %w", cfg.NodeName, err)
	}

	r.ctx, r.cancel = context.WithCancel(context.Background())
	factory := informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0)
	inf := factory.Core().V1().Pods().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { r.observe(o, false) },
		UpdateFunc: func(_, o any) { r.observe(o, false) },
		DeleteFunc: func(o any) {
			if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			r.observe(o, true)
		},
	}); err != nil {
		r.cancel()
		r.release()
		return nil, fmt.Errorf("podrunner: pod informer: %w", err)
	}
	factory.Start(r.ctx.Done())
	syncCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), inf.HasSynced) {
		r.cancel()
		factory.Shutdown()
		r.release()
		return nil, errors.New("podrunner: pod informer did not sync within 30s")
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		<-r.ctx.Done()
		factory.Shutdown()
	}()
	r.wg.Add(1)
	go r.heartbeat()
	cfg.Logf("podrunner: node %s ready, bridge %s %s/24", cfg.NodeName, r.bridgeName(), r.hostIP)
	return r, nil
}

// HostIP is the host's address on the pod bridge: reachable from every pod and from the
// host, so a gateway bound there serves both.
func (r *Runner) HostIP() netip.Addr { return r.hostIP }

// Close stops every pod's processes, removes every network object and the Node, and
// waits (bounded) for the runner's goroutines.
func (r *Runner) Close() error {
	r.cancel()
	r.mu.Lock()
	pods := make([]*pod, 0, len(r.pods))
	for _, p := range r.pods {
		pods = append(pods, p)
	}
	r.mu.Unlock()
	for _, p := range pods {
		p.stopAndWait()
	}
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	var errs []error
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		errs = append(errs, errors.New("podrunner: goroutines did not stop within 30s"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.cfg.Client.CoreV1().Nodes().Delete(ctx, r.cfg.NodeName, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		// The API server may already be gone; the network cleanup below matters more.
		r.cfg.Logf("podrunner: deleting node: %v", err)
	}
	r.release()
	return errors.Join(errs...)
}

// release stops the log server, removes all network objects and drops the lock.
func (r *Runner) release() {
	r.stopLogServer()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r.removeAllNetworkObjects(ctx)
	if r.lock != nil {
		_ = syscall.Flock(int(r.lock.Fd()), syscall.LOCK_UN)
		_ = r.lock.Close()
		r.lock = nil
	}
}

// createNode registers the Node as Ready. Admission adds the not-ready taint to new
// Nodes; the runner binds pods itself so the taint does not matter for scheduling, but
// it is cleared so that nothing else treats the Node as not ready.
func (r *Runner) createNode(ctx context.Context) error {
	nodes := r.cfg.Client.CoreV1().Nodes()
	_ = nodes.Delete(ctx, r.cfg.NodeName, metav1.DeleteOptions{})
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: r.cfg.NodeName, Labels: map[string]string{
			"kubernetes.io/hostname": r.cfg.NodeName, "kubernetes.io/os": "linux"}},
	}
	n, err := nodes.Create(ctx, n, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating: %w", err)
	}
	if err := r.writeNodeStatus(ctx); err != nil {
		return err
	}
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := nodes.Get(ctx, r.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(n.Spec.Taints) == 0 {
			return nil
		}
		n.Spec.Taints = nil
		_, err = nodes.Update(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

// writeNodeStatus writes Ready=True with a fresh heartbeat, and the Node's address.
func (r *Runner) writeNodeStatus(ctx context.Context) error {
	nodes := r.cfg.Client.CoreV1().Nodes()
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := nodes.Get(ctx, r.cfg.NodeName, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading: %w", err)
		}
		now := metav1.Now()
		capacity := corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("32"),
			corev1.ResourceMemory: resource.MustParse("64Gi"),
			corev1.ResourcePods:   resource.MustParse("240"),
		}
		n.Status.Capacity, n.Status.Allocatable = capacity, capacity
		n.Status.Addresses = []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: r.hostIP.String()},
			{Type: corev1.NodeHostName, Address: r.cfg.NodeName},
		}
		// The API server proxies pod logs to this port of the InternalIP (logs.go).
		n.Status.DaemonEndpoints.KubeletEndpoint.Port = r.logPort
		n.Status.Phase = corev1.NodeRunning
		n.Status.Conditions = []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "sluice conformance pod runner", LastHeartbeatTime: now, LastTransitionTime: now,
		}}
		_, err = nodes.UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
}

// heartbeat renews the Node's Ready condition, as a kubelet does, until Close.
func (r *Runner) heartbeat() {
	defer r.wg.Done()
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
			if err := r.writeNodeStatus(ctx); err != nil && r.ctx.Err() == nil {
				r.cfg.Logf("podrunner: node heartbeat: %v", err)
			}
			cancel()
		}
	}
}

// observe routes a pod event: unscheduled pods are bound to the Node, the Node's pods
// are started, and deleted or terminating ones are stopped and finalized.
func (r *Runner) observe(o any, deleted bool) {
	p, ok := o.(*corev1.Pod)
	if !ok || r.ctx.Err() != nil {
		return
	}
	if p.Spec.NodeName == "" && !deleted && p.DeletionTimestamp == nil {
		r.bind(p)
		return
	}
	if p.Spec.NodeName != r.cfg.NodeName {
		return
	}
	r.mu.Lock()
	rp := r.pods[p.UID]
	if rp == nil && !deleted && p.DeletionTimestamp == nil {
		rp = newPod(r, p)
		r.pods[p.UID] = rp
		r.wg.Add(1)
		go rp.run()
	}
	r.mu.Unlock()
	if rp == nil {
		if p.DeletionTimestamp != nil && !deleted {
			// Terminating and never started here (or already forgotten): finalize.
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				r.finalize(p.Namespace, p.Name, p.UID)
			}()
		}
		return
	}
	if deleted || p.DeletionTimestamp != nil {
		rp.requestStop(!deleted)
	}
}

// bind assigns a pending pod to the Node, in place of a scheduler.
func (r *Runner) bind(p *corev1.Pod) {
	b := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name, UID: p.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: r.cfg.NodeName},
	}
	ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
	defer cancel()
	err := r.cfg.Client.CoreV1().Pods(p.Namespace).Bind(ctx, b, metav1.CreateOptions{})
	if err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) && r.ctx.Err() == nil {
		r.cfg.Logf("podrunner: binding %s/%s: %v", p.Namespace, p.Name, err)
	}
}

// finalize deletes a terminating pod with grace period 0: the kubelet's last step, without
// which the pod stays Terminating forever.
func (r *Runner) finalize(ns, name string, uid types.UID) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := r.cfg.Client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{
		GracePeriodSeconds: new(int64), Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		r.cfg.Logf("podrunner: final delete of %s/%s: %v", ns, name, err)
	}
}

// allocate reserves a free pod address (.64 to .250 of the subnet; .2 to .63 are the
// host's, for Gateways with addresses of their own).
func (r *Runner) allocate() (netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	base := r.cfg.Subnet.Masked().Addr().As4()
	for i := firstPodHost; i <= 250; i++ {
		a := base
		a[3] = byte(i)
		addr := netip.AddrFrom4(a)
		if !r.used[addr] {
			r.used[addr] = true
			return addr, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("no free address in %s", r.cfg.Subnet)
}

func (r *Runner) releaseAddr(a netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.used, a)
}

func (r *Runner) forget(uid types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.pods, uid)
}

// program finds the image's program: the exact reference first, then the repository
// without its tag or digest.
func (r *Runner) program(image string) (Program, bool) {
	if p, ok := r.cfg.Images[image]; ok {
		return p, true
	}
	repo := image
	if i := strings.Index(repo, "@"); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	p, ok := r.cfg.Images[repo]
	return p, ok
}
