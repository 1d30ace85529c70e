"""The homelab-images command (also ``python -m homelab_images``)."""
