#!/bin/bash
# Generalize the VM so that every clone gets its own identity, then seal it.
#
# Packer runs this last, over SSH as root; the VM is shut down and converted to
# a template right after. Nothing here may fail silently: a half-sealed template
# produces clones that share machine-id, SSH host keys or k3s node identity.
# What is removed follows AlmaLinux's own cloud images (AlmaLinux/cloud-images,
# ansible/roles/cleanup_vm/tasks/main.yml), except that free space is discarded
# with fstrim instead of being written with zeros (the disks have discard on).
set -euo pipefail

echo "==> removing k3s node identity and state (k3s never ran, this is belt and braces)"
rm -f /etc/rancher/node/password
rm -rf /var/lib/rancher/k3s/server /var/lib/rancher/k3s/agent/etc /var/lib/rancher/k3s/data
rm -f /etc/rancher/k3s/config.yaml /etc/rancher/k3s/k3s.yaml

echo "==> removing cloud-init state, logs and seed"
cloud-init clean --logs --seed

echo "==> removing SSH host keys (regenerated on first boot)"
rm -f /etc/ssh/ssh_host_*

echo "==> removing network connection profiles and persistent net rules learnt during the build"
rm -f /etc/NetworkManager/system-connections/*
rm -f /var/lib/NetworkManager/*.lease /var/lib/NetworkManager/internal-*
rm -f /etc/udev/rules.d/70*
truncate --size=0 /etc/resolv.conf

echo "==> removing the build VM's hostname, machine info, random seed and credential secret"
rm -f /etc/hostname /etc/machine-info /var/lib/systemd/random-seed /var/lib/systemd/credential.secret

echo "==> removing older kernels, if any"
dnf -y remove --oldinstallonly || echo "no older kernels to remove"

echo "==> rebuilding the initramfs with every driver (dracut-config-generic), not only the build VM's"
dracut --force --regenerate-all

echo "==> cleaning DNF caches, logs and installer leftovers"
dnf clean all
rm -rf /var/cache/dnf/* /var/lib/dnf/history*
rm -f /root/anaconda-ks.cfg /root/original-ks.cfg /root/ks-post.log
rm -f /etc/ssh/sshd_config.d/01-permitrootlogin.conf
rm -rf /var/log/anaconda /var/log/qemu-ga /var/log/tuned /var/lib/cloud
find /var/log -type f \( -name '*.old' -o -name '*.gz' -o -name '*.[0-9]' -o -name '*-[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]' \) -delete
find /var/log -type f -exec truncate --size=0 {} +
journalctl --rotate --vacuum-time=1s
rm -f /root/.bash_history

echo "==> locking root and removing the build key"
passwd --lock root
rm -f /root/.ssh/authorized_keys

echo "==> emptying machine-id (truncate, never delete: systemd regenerates an empty one)"
truncate --size=0 /etc/machine-id
rm -f /var/lib/dbus/machine-id
ln -s /etc/machine-id /var/lib/dbus/machine-id

echo "==> emptying /tmp and /var/tmp"
find /tmp /var/tmp -mindepth 1 -delete

echo "==> discarding free space"
fstrim --all --verbose || echo "fstrim: discard not supported by this storage; skipped"
sync
