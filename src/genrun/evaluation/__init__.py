"""Sample-quality evaluation shared by every image model family (see `image_quality.evaluate_images`)."""
