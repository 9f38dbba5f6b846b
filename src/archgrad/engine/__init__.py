"""What runs networks: a search's task (``task``: data and loss for images; ``lmtask``: token
streams and truncated back-propagation for language models), training a genotype from scratch
(``train``, ``lmtrain``), several processes (``dist``: torchrun), memory estimates before
anything is built (``memory``), parameter and FLOP counts (``profile``) and the CPU allocator
setting (``runtime``)."""
