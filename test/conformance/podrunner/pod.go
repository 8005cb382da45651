package podrunner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"
)

const (
	// volumeWait bounds the wait for a Secret or ConfigMap a volume needs: the suite
	// creates some of them after the Deployments, so a pod's first start may find one
	// missing.
	volumeWait = 60 * time.Second
	// readyWait bounds the TCP readiness probe of one container.
	readyWait = 60 * time.Second
	// stopGrace is how long processes get between SIGTERM and SIGKILL.
	stopGrace = 2 * time.Second
)

// statusBackoff retries pod status writes on conflicts: controllers and the pod's own
// updates race with the runner's writes.
var statusBackoff = wait.Backoff{Steps: 20, Duration: 50 * time.Millisecond, Factor: 1.5, Jitter: 0.1, Cap: 2 * time.Second}

// pod is one pod the runner runs: its processes, address and folder.
type pod struct {
	r    *Runner
	spec *corev1.Pod // as first seen; the spec of a pod does not change
	dir  string

	stopOnce sync.Once
	stop     chan struct{}
	mu       sync.Mutex
	finalize bool // whether to delete the pod with grace 0 once stopped
	done     chan struct{}

	addr  netip.Addr
	procs []*proc
}

type proc struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
}

func newPod(r *Runner, p *corev1.Pod) *pod {
	return &pod{r: r, spec: p.DeepCopy(), dir: filepath.Join(r.cfg.Dir, p.Namespace+"_"+p.Name),
		stop: make(chan struct{}), done: make(chan struct{})}
}

func (p *pod) key() string { return p.spec.Namespace + "/" + p.spec.Name }

func (p *pod) logf(format string, args ...any) {
	p.r.cfg.Logf("podrunner: pod %s: "+format, append([]any{p.key()}, args...)...)
}

// requestStop asks the pod's goroutine to stop its processes; finalize also deletes the
// pod with grace period 0 afterwards (it is Terminating).
func (p *pod) requestStop(finalize bool) {
	p.mu.Lock()
	p.finalize = p.finalize || finalize
	p.mu.Unlock()
	p.stopOnce.Do(func() { close(p.stop) })
}

// stopAndWait stops the pod without finalizing it (the runner is closing) and waits,
// bounded, for its goroutine.
func (p *pod) stopAndWait() {
	p.requestStop(false)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.logf("did not stop within 20s")
	}
}

func (p *pod) stopped() bool {
	select {
	case <-p.stop:
		return true
	default:
		return false
	}
}

// run is the pod's whole life on the Node: start, serve until deletion, clean up.
func (p *pod) run() {
	defer p.r.wg.Done()
	defer close(p.done)
	defer p.r.forget(p.spec.UID)
	defer p.cleanUp()

	programs := make([]Program, len(p.spec.Spec.Containers))
	for i, c := range p.spec.Spec.Containers {
		prog, ok := p.r.program(c.Image)
		if !ok {
			p.logf("left Pending: no local binary for image %q of container %s (add it to the image table to run this pod)", c.Image, c.Name)
			<-p.stop
			return
		}
		programs[i] = prog
	}
	if err := p.start(programs); err != nil {
		if !p.stopped() {
			p.logf("not started: %v", err)
			p.writeStatus(false, err.Error())
		}
		<-p.stop
		return
	}
	p.serve()
}

// start allocates the address, makes the network namespace and volumes, starts the
// processes, waits for readiness and writes the Ready status.
func (p *pod) start(programs []Program) error {
	addr, err := p.r.allocate()
	if err != nil {
		return err
	}
	p.addr = addr
	if err := p.r.setUpPodNet(p.r.ctx, addr); err != nil {
		return err
	}
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return fmt.Errorf("pod folder: %w", err)
	}
	mounts, err := p.writeVolumes()
	if err != nil {
		return err
	}
	netns, _, _ := p.r.podNetName(addr)
	for i, c := range p.spec.Spec.Containers {
		env, err := p.env(c, mounts)
		if err != nil {
			return fmt.Errorf("container %s: %w", c.Name, err)
		}
		pr, err := p.startProcess(c, programs[i], env, mounts, netns)
		if err != nil {
			return fmt.Errorf("container %s: %w", c.Name, err)
		}
		p.procs = append(p.procs, pr)
	}
	for i, c := range p.spec.Spec.Containers {
		port := programs[i].ReadyPort
		if programs[i].ReadyPortEnv != "" {
			for _, e := range c.Env {
				if e.Name == programs[i].ReadyPortEnv {
					if n, err := strconv.Atoi(e.Value); err == nil {
						port = n
					}
				}
			}
		}
		if port == 0 {
			continue
		}
		if err := p.probe(p.procs[i], port); err != nil {
			return fmt.Errorf("container %s: %w", c.Name, err)
		}
	}
	p.writeStatus(true, "")
	p.logf("running at %s", addr)
	return nil
}

// serve waits for deletion; a process exiting on its own marks the pod not ready.
func (p *pod) serve() {
	exited := make(chan *proc, len(p.procs))
	for _, pr := range p.procs {
		go func() {
			<-pr.exited
			exited <- pr
		}()
	}
	for {
		select {
		case <-p.stop:
			return
		case pr := <-exited:
			if p.stopped() {
				return
			}
			p.logf("container %s exited: %v; output:\n%s", pr.name, pr.err, tailFile(filepath.Join(p.dir, pr.name+".log"), 2000))
			p.writeStatus(false, fmt.Sprintf("container %s exited: %v", pr.name, pr.err))
		}
	}
}

// cleanUp kills the processes, removes the network namespace and folder, and, when the
// pod is Terminating, finalizes it.
func (p *pod) cleanUp() {
	for _, pr := range p.procs {
		killGroup(pr)
	}
	if p.addr.IsValid() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		p.r.tearDownPodNet(ctx, p.addr)
		cancel()
		p.r.releaseAddr(p.addr)
	}
	_ = os.RemoveAll(p.dir)
	p.mu.Lock()
	fin := p.finalize
	p.mu.Unlock()
	if fin {
		p.r.finalize(p.spec.Namespace, p.spec.Name, p.spec.UID)
		p.logf("deleted")
	}
}

// killGroup ends a process and its children: SIGTERM, then SIGKILL after stopGrace.
func killGroup(pr *proc) {
	pid := pr.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-pr.exited:
		return
	case <-time.After(stopGrace):
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	select {
	case <-pr.exited:
	case <-time.After(10 * time.Second):
	}
}

// writeVolumes writes the pod's Secret, ConfigMap and emptyDir volumes into its folder
// and returns the container mount path → local folder of each, for rewriting paths.
// Other volume kinds (the service account token's projected volume) are skipped.
func (p *pod) writeVolumes() (map[string]string, error) {
	local := map[string]string{}
	for _, v := range p.spec.Spec.Volumes {
		dir := filepath.Join(p.dir, "volumes", v.Name)
		var files map[string][]byte
		var err error
		switch {
		case v.Secret != nil:
			files, err = p.secretFiles(v.Secret)
		case v.ConfigMap != nil:
			files, err = p.configMapFiles(v.ConfigMap)
		case v.EmptyDir != nil:
			files = map[string][]byte{}
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("volume %s: %w", v.Name, err)
		}
		for name, data := range files {
			path := filepath.Join(dir, filepath.Clean("/"+name))
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return nil, fmt.Errorf("volume %s: %w", v.Name, err)
			}
			if err := os.WriteFile(path, data, 0o600); err != nil {
				return nil, fmt.Errorf("volume %s: %w", v.Name, err)
			}
		}
		local[v.Name] = dir
	}
	mounts := map[string]string{}
	for _, c := range p.spec.Spec.Containers {
		for _, m := range c.VolumeMounts {
			if d, ok := local[m.Name]; ok {
				mounts[filepath.Clean(m.MountPath)] = filepath.Join(d, m.SubPath)
			}
		}
	}
	return mounts, nil
}

// waitObject gets an object a volume needs, retrying while it does not exist yet.
func (p *pod) waitObject(what string, get func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(p.r.ctx, volumeWait)
	defer cancel()
	var last error
	for {
		last = get(ctx)
		if last == nil || !apierrors.IsNotFound(last) {
			return last
		}
		select {
		case <-p.stop:
			return errors.New("pod stopped")
		case <-ctx.Done():
			return fmt.Errorf("%s still missing after %s: %w", what, volumeWait, last)
		case <-time.After(time.Second):
		}
	}
}

func (p *pod) secretFiles(v *corev1.SecretVolumeSource) (map[string][]byte, error) {
	var s *corev1.Secret
	err := p.waitObject("secret "+v.SecretName, func(ctx context.Context) (err error) {
		s, err = p.r.cfg.Client.CoreV1().Secrets(p.spec.Namespace).Get(ctx, v.SecretName, metav1.GetOptions{})
		return err
	})
	if err != nil {
		return nil, err
	}
	return project(s.Data, v.Items)
}

func (p *pod) configMapFiles(v *corev1.ConfigMapVolumeSource) (map[string][]byte, error) {
	var cm *corev1.ConfigMap
	err := p.waitObject("configmap "+v.Name, func(ctx context.Context) (err error) {
		cm, err = p.r.cfg.Client.CoreV1().ConfigMaps(p.spec.Namespace).Get(ctx, v.Name, metav1.GetOptions{})
		return err
	})
	if err != nil {
		return nil, err
	}
	data := map[string][]byte{}
	for k, s := range cm.Data {
		data[k] = []byte(s)
	}
	for k, b := range cm.BinaryData {
		data[k] = b
	}
	return project(data, v.Items)
}

// project applies a volume's items (key → path) to an object's data: all keys when
// there are no items.
func project(data map[string][]byte, items []corev1.KeyToPath) (map[string][]byte, error) {
	if len(items) == 0 {
		return data, nil
	}
	out := map[string][]byte{}
	for _, it := range items {
		b, ok := data[it.Key]
		if !ok {
			return nil, fmt.Errorf("no key %q", it.Key)
		}
		out[it.Path] = b
	}
	return out, nil
}

// rewrite points a path inside a mounted volume at the volume's local folder.
func rewrite(s string, mounts map[string]string) string {
	for mp, local := range mounts {
		if s == mp {
			return local
		}
		if rest, ok := strings.CutPrefix(s, mp+"/"); ok {
			return filepath.Join(local, rest)
		}
	}
	return s
}

// env builds a container's environment: plain values (paths into volumes rewritten)
// and the downward API fieldRefs the suite's manifests use.
func (p *pod) env(c corev1.Container, mounts map[string]string) ([]string, error) {
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + p.dir}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env = append(env, e.Name+"="+rewrite(e.Value, mounts))
			continue
		}
		if e.ValueFrom.FieldRef == nil {
			return nil, fmt.Errorf("env %s: only value and fieldRef are supported", e.Name)
		}
		var v string
		switch e.ValueFrom.FieldRef.FieldPath {
		case "metadata.name":
			v = p.spec.Name
		case "metadata.namespace":
			v = p.spec.Namespace
		case "metadata.uid":
			v = string(p.spec.UID)
		case "status.podIP":
			v = p.addr.String()
		case "status.hostIP":
			v = p.r.hostIP.String()
		case "spec.nodeName":
			v = p.r.cfg.NodeName
		case "spec.serviceAccountName":
			v = p.spec.Spec.ServiceAccountName
		default:
			return nil, fmt.Errorf("env %s: fieldRef %q is not supported", e.Name, e.ValueFrom.FieldRef.FieldPath)
		}
		env = append(env, e.Name+"="+v)
	}
	return env, nil
}

// startProcess starts a container's program in the pod's network namespace, in a
// process group of its own so that deletion ends its children too.
func (p *pod) startProcess(c corev1.Container, prog Program, env []string, mounts map[string]string, netns string) (*proc, error) {
	args := prog.Args
	if args == nil {
		args = append(append([]string{}, c.Command[min(1, len(c.Command)):]...), c.Args...)
		for i := range args {
			args[i] = rewrite(args[i], mounts)
		}
	}
	out, err := os.Create(filepath.Join(p.dir, c.Name+".log"))
	if err != nil {
		return nil, fmt.Errorf("output file: %w", err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", netns, prog.Path}, args...)...)
	cmd.Env = env
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = out.Close()
		return nil, fmt.Errorf("starting %s: %w", prog.Path, err)
	}
	pr := &proc{name: c.Name, cmd: cmd, exited: make(chan struct{})}
	go func() {
		pr.err = cmd.Wait()
		_ = out.Close()
		close(pr.exited)
	}()
	return pr, nil
}

// probe waits until the container accepts TCP connections on port.
func (p *pod) probe(pr *proc, port int) error {
	addr := net.JoinHostPort(p.addr.String(), strconv.Itoa(port))
	deadline := time.Now().Add(readyWait)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = conn.Close()
			return nil
		}
		select {
		case <-pr.exited:
			return fmt.Errorf("exited before listening on %s: %v; output:\n%s", addr, pr.err, tailFile(filepath.Join(p.dir, pr.name+".log"), 2000))
		case <-p.stop:
			return errors.New("pod stopped")
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening on %s after %s: %w", addr, readyWait, err)
		}
	}
}

// writeStatus writes the pod's status as a kubelet would: Running with its address,
// and Ready or not. The server-set qosClass is kept.
func (p *pod) writeStatus(ready bool, message string) {
	ctx, cancel := context.WithTimeout(p.r.ctx, 30*time.Second)
	defer cancel()
	pods := p.r.cfg.Client.CoreV1().Pods(p.spec.Namespace)
	err := retry.RetryOnConflict(statusBackoff, func() error {
		cur, err := pods.Get(ctx, p.spec.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.UID != p.spec.UID || cur.DeletionTimestamp != nil {
			return nil
		}
		now := metav1.Now()
		status := corev1.ConditionFalse
		if ready {
			status = corev1.ConditionTrue
		}
		s := &cur.Status
		s.Phase = corev1.PodRunning
		s.Message = message
		if p.addr.IsValid() {
			s.PodIP = p.addr.String()
			s.PodIPs = []corev1.PodIP{{IP: p.addr.String()}}
		}
		s.HostIP = p.r.hostIP.String()
		s.HostIPs = []corev1.HostIP{{IP: p.r.hostIP.String()}}
		if s.StartTime == nil {
			s.StartTime = &now
		}
		s.Conditions = []corev1.PodCondition{
			{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: status, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: status, LastTransitionTime: now},
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		}
		s.ContainerStatuses = nil
		for i, c := range p.spec.Spec.Containers {
			cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image, ImageID: c.Image, Ready: ready, Started: &ready}
			if i < len(p.procs) {
				cs.ContainerID = fmt.Sprintf("podrunner://%d", p.procs[i].cmd.Process.Pid)
			}
			if ready {
				cs.State.Running = &corev1.ContainerStateRunning{StartedAt: *s.StartTime}
			} else {
				cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "NotReady", Message: message}
			}
			s.ContainerStatuses = append(s.ContainerStatuses, cs)
		}
		_, err = pods.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil && !apierrors.IsNotFound(err) && p.r.ctx.Err() == nil {
		p.logf("writing status: %v", err)
	}
}

// tailFile returns the last n bytes of a file, for logging a failed process's output.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
