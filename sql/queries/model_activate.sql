select pyembed.activate_model(%(model_id)s, %(force)s)
