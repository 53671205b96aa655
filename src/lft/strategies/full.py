"""Full fine-tuning: every parameter trains."""


def apply(model, cfg, task):
    for param in model.parameters():
        param.requires_grad_(True)
    return model, task
