from steerlab.policies.flow_matching.configuration import FlowPolicyConfig
from steerlab.policies.flow_matching.modeling import FlowMatchingPolicy

__all__ = ["FlowPolicyConfig", "FlowMatchingPolicy"]
