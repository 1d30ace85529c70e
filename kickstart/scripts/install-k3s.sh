#!/bin/bash
# Install k3s into the template without ever starting it.
#
# Packer runs this over SSH on the freshly installed VM. Inputs (environment,
# set from the image's entry in the stack config):
#   HI_K3S_VERSION          k3s release tag, e.g. v1.33.5+k3s1
#   HI_K3S_BINARY_SHA256    sha256 of the amd64 k3s binary
#   HI_K3S_INSTALL_SHA256   sha256 of install.sh at that tag
#   HI_K3S_AIRGAP_SHA256    sha256 of k3s-airgap-images-amd64.tar.zst, or empty
#
# The variables are deliberately not named K3S_*: the k3s installer copies every
# K3S_* variable into the service's environment file, and nothing from the build
# may end up in the template's k3s configuration.
set -euo pipefail

: "${HI_K3S_VERSION:?}" "${HI_K3S_BINARY_SHA256:?}" "${HI_K3S_INSTALL_SHA256:?}"
HI_K3S_AIRGAP_SHA256="${HI_K3S_AIRGAP_SHA256:-}"

release_url="https://github.com/k3s-io/k3s/releases/download/${HI_K3S_VERSION/+/%2B}"
script_url="https://raw.githubusercontent.com/k3s-io/k3s/${HI_K3S_VERSION/+/%2B}/install.sh"
workdir="$(mktemp -d)"
trap 'rm -rf "${workdir}"' EXIT

fetch_verified() {
  local url="$1" expected="$2" target="$3"
  echo "==> downloading ${url}"
  curl --fail --silent --show-error --location --retry 5 --retry-delay 5 --output "${target}" "${url}"
  echo "${expected}  ${target}" | sha256sum --check --strict --quiet || {
    echo "checksum mismatch for ${url}: expected ${expected}" >&2
    exit 1
  }
}

fetch_verified "${release_url}/k3s" "${HI_K3S_BINARY_SHA256}" "${workdir}/k3s"
fetch_verified "${script_url}" "${HI_K3S_INSTALL_SHA256}" "${workdir}/install.sh"
install -m 0755 -o root -g root "${workdir}/k3s" /usr/local/bin/k3s

if [[ -n "${HI_K3S_AIRGAP_SHA256}" ]]; then
  # k3s imports every tarball in this directory when it starts: first boot pulls nothing.
  install -d -m 0755 /var/lib/rancher/k3s/agent/images
  fetch_verified "${release_url}/k3s-airgap-images-amd64.tar.zst" "${HI_K3S_AIRGAP_SHA256}" \
    /var/lib/rancher/k3s/agent/images/k3s-airgap-images-amd64.tar.zst
fi

echo "==> installing k3s-selinux from the Rancher RPM repository (GPG-checked)"
cat > /etc/yum.repos.d/rancher-k3s-common.repo <<'REPO'
[rancher-k3s-common-stable]
name=Rancher K3s Common (stable)
baseurl=https://rpm.rancher.io/k3s/stable/common/centos/9/noarch
enabled=1
gpgcheck=1
repo_gpgcheck=0
gpgkey=https://rpm.rancher.io/public.key
REPO
dnf install -y --setopt=install_weak_deps=False k3s-selinux
restorecon -v /usr/local/bin/k3s

# The installer writes both units (server and agent) so that first boot only has
# to enable one; skipping enable and start keeps k3s from ever running here,
# which would leave node identity (/etc/rancher/node/password, certificates) behind.
for role in server agent; do
  echo "==> installing the k3s ${role} unit (not enabled, not started)"
  env -i PATH="/usr/local/bin:/usr/bin:/usr/sbin:/bin:/sbin" \
    INSTALL_K3S_SKIP_DOWNLOAD=true \
    INSTALL_K3S_SKIP_ENABLE=true \
    INSTALL_K3S_SKIP_START=true \
    INSTALL_K3S_SKIP_SELINUX_RPM=true \
    INSTALL_K3S_VERSION="${HI_K3S_VERSION}" \
    INSTALL_K3S_EXEC="${role}" \
    sh "${workdir}/install.sh"
done

if systemctl is-active --quiet k3s.service k3s-agent.service; then
  echo "k3s is running in the template; refusing to continue" >&2
  exit 1
fi
/usr/local/bin/k3s --version
