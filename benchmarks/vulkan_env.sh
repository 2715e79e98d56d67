# Sourced by the device scripts that run wgpu on Vulkan: the GPU machine has no Vulkan loader,
# so the loader's .debs carried in .gl/ are unpacked, NVIDIA's ICD manifest (outside the
# loader's default search paths) is named in VK_DRIVER_FILES, and what the loader can see is
# written to the file named by the first argument.
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
{
  echo "## ldconfig -p | grep libvulkan"; ldconfig -p | grep libvulkan
  echo "## ICD manifests"
  for d in /usr/local/nvidia/share/vulkan/icd.d /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/share/vulkan/icd.d; do
    [ -d "$d" ] && { echo "# $d"; ls -l "$d"; for j in "$d"/*.json; do [ -f "$j" ] && { echo "# $j"; cat "$j"; }; done; }
  done
  echo "## nvidia-smi"; nvidia-smi
} > "$1" 2>&1
NV_ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$NV_ICD" ] && export VK_DRIVER_FILES=$NV_ICD
echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}" | tee -a "$1"
