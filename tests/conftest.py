import os
import tempfile

import pytest

# Tests never write into the user's real cache.
os.environ.setdefault("SAST_DEPLOY_CACHE", os.path.join(tempfile.gettempdir(), "sast-deploy-test-cache"))


@pytest.fixture(autouse=True)
def _seed():
    import numpy as np
    import torch

    torch.manual_seed(0)
    np.random.seed(0)
